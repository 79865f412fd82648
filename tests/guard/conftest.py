"""A guard server on a free loopback port, in a background thread, for each test that asks."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

TOKEN = "test-token-0123456789"


class Client:
    """A tiny HTTP client over urllib: real sockets, no dependency."""

    def __init__(self, base: str, token: str | None = TOKEN) -> None:
        self.base = base
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | bool | None = True,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        bearer = self.token if token is True else token
        if bearer:
            req.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read())

    def chat(self, text: str, **fields: Any) -> tuple[int, dict[str, str], Any]:
        body = {"model": "m", "messages": [{"role": "user", "content": text}], **fields}
        return self.request("POST", "/v1/chat/completions", body)

    def stream(self, text: str, **fields: Any) -> list[Any]:
        """The events of a streamed answer: parsed JSON chunks, then the string ``[DONE]``."""
        body = {"messages": [{"role": "user", "content": text}], "stream": True, **fields}
        req = urllib.request.Request(
            self.base + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST"
        )
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {self.token}")
        events: list[Any] = []
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp:
                line = line.decode().strip()
                if line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    events.append(data if data == "[DONE]" else json.loads(data))
        return events


@contextmanager
def serving(app: Any) -> Iterator[Client]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) until the block ends."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Client(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def slow_model(model: Any, seconds: float) -> Iterator[None]:
    """Every forward pass of ``model`` sleeps ``seconds`` first (hook removed on exit)."""
    handle = model.register_forward_pre_hook(lambda module, args: time.sleep(seconds))
    try:
        yield
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def guarded(organism, organism_direction):
    """``(model, tokenizer, direction, detector, harmful, harmless)``: a direction detector
    calibrated at 1% FPR on the harmless training prompts, two held-out harmful prompts it
    flags and two harmless ones it does not."""
    from redblue.detect.activation import DirectionDetector

    model, tok, splits = organism
    detector = DirectionDetector.from_direction(organism_direction)
    detector.calibrate(detector.score(model, tok, splits["harmless_train"]), 0.01)
    harmful = splits["harmful"].instructions[:8]
    harmless = splits["harmless"].instructions[:8]
    flags = detector.flag(model, tok, harmful + harmless)
    fired = [p for p, f in zip(harmful, flags[:8], strict=True) if f][:2]
    quiet = [p for p, f in zip(harmless, flags[8:], strict=True) if not f][:2]
    assert len(fired) == 2 and len(quiet) == 2
    return model, tok, organism_direction, detector, fired, quiet

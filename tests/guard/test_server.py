"""The guard server over real HTTP on loopback: auth, endpoints, policies, limits, logs."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from redblue.detect.detector import Calibration
from redblue.errors import ConfigError
from redblue.evaluate.stats import Rate
from redblue.guard import LOGGER, GuardConfig, create_app
from tests.guard.conftest import TOKEN, serving, slow_model

N = 12  # tokens per answer: enough to tell answers apart, few enough to be fast


def _config(**fields) -> GuardConfig:
    return GuardConfig(token=TOKEN, **fields)


def _content(body) -> str:
    return body["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def plain(guarded):
    """Answers of the unguarded server (policy none) to every test prompt."""
    model, tok, _, _, fired, quiet = guarded
    with serving(create_app(model, tok, None, _config(policy="none"))) as client:
        answers = {}
        for prompt in fired + quiet:
            status, _, body = client.chat(prompt, max_tokens=N)
            assert status == 200 and "redblue" not in body
            answers[prompt] = _content(body)
    return answers


@pytest.fixture(scope="module")
def flag_server(guarded):
    model, tok, _, detector, *_ = guarded
    with serving(create_app(model, tok, detector, _config(policy="flag"))) as client:
        yield client


def test_every_endpoint_but_healthz_needs_the_token(flag_server) -> None:
    assert flag_server.request("GET", "/healthz", token=None)[:3:2] == (200, {"status": "ok"})
    for token in (None, "wrong-token", TOKEN + "x"):
        for method, path, body in (
            ("GET", "/v1/models", None),
            ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ):
            status, headers, answer = flag_server.request(method, path, body, token=token)
            assert status == 401
            assert answer["error"]["code"] == "invalid_api_key"
            assert headers["www-authenticate"] == "Bearer"


def test_models_lists_the_served_model(flag_server) -> None:
    status, _, body = flag_server.request("GET", "/v1/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["redblue-guard"]


def test_a_generated_token_is_long_and_random(guarded) -> None:
    model, tok, _, detector, *_ = guarded
    apps = [create_app(model, tok, detector, GuardConfig()) for _ in range(2)]
    tokens = [app.state.config.token.get_secret_value() for app in apps]
    assert all(app.state.token_generated for app in apps)
    assert tokens[0] != tokens[1] and min(map(len, tokens)) >= 32


def test_flag_answers_as_usual_and_adds_the_detectors_score(guarded, plain, flag_server) -> None:
    model, tok, _, detector, fired, quiet = guarded
    expected = detector.score(model, tok, fired + quiet)
    for prompt, want in zip(fired + quiet, expected, strict=True):
        status, headers, body = flag_server.chat(prompt, max_tokens=N)
        assert status == 200 and body["object"] == "chat.completion"
        assert headers["x-request-id"] == body["id"]
        assert _content(body) == plain[prompt]
        info = body["redblue"]
        assert info["fired"] == (prompt in fired)
        assert info["action"] == ("flagged" if prompt in fired else "answered")
        assert info["single_pass"] is True
        assert info["threshold"] == pytest.approx(detector.threshold)
        assert info["score"] == pytest.approx(float(want), abs=1e-4, rel=1e-5)
        usage = body["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert 0 < usage["completion_tokens"] <= N


def test_streaming_sends_the_decision_first_then_the_same_answer(
    guarded, plain, flag_server
) -> None:
    *_, fired, quiet = guarded
    for prompt in (fired[0], quiet[0]):
        events = flag_server.stream(prompt, max_tokens=N)
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[0]["redblue"]["fired"] == (prompt in fired)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == plain[prompt]
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_block_refuses_without_generating_only_when_the_detector_fires(guarded, plain) -> None:
    model, tok, _, detector, fired, quiet = guarded
    config = _config(policy="block", refusal="Blocked by policy.")
    with serving(create_app(model, tok, detector, config)) as client:
        for prompt in fired:
            status, _, body = client.chat(prompt, max_tokens=N)
            assert status == 200 and _content(body) == "Blocked by policy."
            assert body["choices"][0]["finish_reason"] == "content_filter"
            assert body["usage"]["completion_tokens"] == 0
            assert body["redblue"]["action"] == "blocked"
        for prompt in quiet:
            status, _, body = client.chat(prompt, max_tokens=N)
            assert _content(body) == plain[prompt] and body["redblue"]["fired"] is False
        events = client.stream(fired[0], max_tokens=N)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in events[:-1])
        assert text == "Blocked by policy." and events[-1] == "[DONE]"


def test_steer_changes_the_answer_only_when_the_detector_fires(guarded, plain) -> None:
    import copy

    from redblue.interventions import add
    from redblue.models import GenerationSettings, generate

    model, tok, direction, detector, fired, quiet = guarded
    with serving(create_app(model, tok, detector, _config(policy="steer"), direction)) as client:
        for prompt in quiet:
            _, _, body = client.chat(prompt, max_tokens=N)
            assert _content(body) == plain[prompt] and body["redblue"]["fired"] is False
        _, _, body = client.chat(fired[0], max_tokens=N)
        assert body["redblue"]["action"] == "steered"
    # a detector that fires on everything: the harmless answers now carry the direction
    eager = copy.deepcopy(detector)
    eager.calibration = Calibration(-1e9, 0.5, Rate(1, 1))
    with serving(create_app(model, tok, eager, _config(policy="steer"), direction)) as client:
        with add(model, direction):
            reference = generate(
                model, tok, quiet, GenerationSettings(max_new_tokens=N), progress=False
            )
        for prompt, ref in zip(quiet, reference, strict=True):
            _, _, body = client.chat(prompt, max_tokens=N)
            assert body["redblue"]["action"] == "steered"
            assert _content(body) == ref.text != plain[prompt]


def test_policies_fail_early_without_what_they_need(guarded) -> None:
    model, tok, _, detector, *_ = guarded
    with pytest.raises(ConfigError, match="direction"):
        create_app(model, tok, detector, _config(policy="steer"))
    with pytest.raises(ConfigError, match="needs a detector"):
        create_app(model, tok, None, _config(policy="flag"))
    uncalibrated = type(detector)(layers=detector.layers, vectors=detector.vectors)
    with pytest.raises(ConfigError, match="not calibrated"):
        create_app(model, tok, uncalibrated, _config(policy="block"))


def test_limits_answer_413_and_400_naming_the_field(guarded) -> None:
    model, tok, _, detector, *_ = guarded
    config = _config(max_body_bytes=2_000, max_tokens=16, max_messages=3)
    with serving(create_app(model, tok, detector, config)) as client:
        status, _, body = client.chat("x" * 5_000)
        assert status == 413 and "2000 bytes" in body["error"]["message"]
        status, _, body = client.chat("hello", max_tokens=17)
        assert status == 400 and body["error"]["param"] == "max_tokens"
        assert "max_tokens is 17" in body["error"]["message"]
        status, _, body = client.chat("hello", max_completion_tokens=100)
        assert status == 400 and body["error"]["param"] == "max_completion_tokens"
        many = [{"role": r, "content": "hi"} for r in ("user", "assistant") * 2] + [
            {"role": "user", "content": "hi"}
        ]
        status, _, body = client.request("POST", "/v1/chat/completions", {"messages": many})
        assert status == 400 and body["error"]["param"] == "messages"
        bad = [{"role": "assistant", "content": "hi"}]
        status, _, body = client.request("POST", "/v1/chat/completions", {"messages": bad})
        assert status == 400 and "role 'user'" in body["error"]["message"]
        status, _, body = client.request("POST", "/v1/chat/completions", raw=b"{not json")
        assert status == 400 and body["error"]["type"] == "invalid_request_error"


def test_a_full_queue_answers_429(guarded) -> None:
    model, tok, _, detector, _, quiet = guarded
    app = create_app(model, tok, detector, _config(max_queue=0))
    with serving(app) as client, slow_model(model, 0.03):
        first: list[int] = []
        thread = threading.Thread(
            target=lambda: first.append(client.chat(quiet[0], max_tokens=N)[0])
        )
        thread.start()
        deadline = time.monotonic() + 10
        while app.state.admission.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        status, headers, body = client.chat(quiet[1], max_tokens=N)
        thread.join()
    assert status == 429 and body["error"]["code"] == "queue_full" and headers["retry-after"]
    assert first == [200]


def test_a_slow_request_answers_504_and_stops_generating(guarded, caplog) -> None:
    model, tok, _, detector, _, quiet = guarded
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = create_app(model, tok, detector, _config(timeout_s=0.3, max_tokens=256))
    with serving(app) as client, slow_model(model, 0.05):
        status, _, body = client.chat(quiet[0], max_tokens=200)
        assert status == 504 and body["error"]["code"] == "timeout"
        deadline = time.monotonic() + 5  # the worker stops at its next token
        while app.state.admission.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.admission.in_flight == 0
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert records[-1]["status"] == 504 and records[-1]["action"] == "timeout"


@pytest.mark.parametrize("log_prompts", [False, True])
def test_one_json_log_line_per_decision_without_the_prompt(guarded, caplog, log_prompts) -> None:
    model, tok, _, detector, fired, _ = guarded
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = create_app(model, tok, detector, _config(policy="block", log_prompts=log_prompts))
    with serving(app) as client:
        _, _, body = client.chat(fired[0], max_tokens=N)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["request_id"] == body["id"]
    assert record["policy"] == "block" and record["action"] == "blocked" and record["fired"]
    assert record["score"] == pytest.approx(body["redblue"]["score"])
    assert record["threshold"] == pytest.approx(detector.threshold)
    assert {"time", "latency_s", "prompt_tokens", "completion_tokens"} <= set(record)
    assert (fired[0] in lines[0]) == log_prompts
    assert TOKEN not in lines[0]


def test_an_error_in_the_model_answers_500_as_json(guarded) -> None:
    model, tok, _, detector, _, quiet = guarded

    def boom(module, args):
        raise RuntimeError("simulated failure")

    app = create_app(model, tok, detector, _config())
    with serving(app) as client:
        handle = model.register_forward_pre_hook(boom)
        try:
            status, _, body = client.chat(quiet[0], max_tokens=N)
        finally:
            handle.remove()
        assert status == 500 and body["error"]["type"] == "server_error"
        assert "simulated" not in body["error"]["message"]
        assert client.chat(quiet[0], max_tokens=N)[0] == 200  # the worker survives

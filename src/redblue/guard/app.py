"""The guard server: an OpenAI-compatible FastAPI app in front of one model and one detector.

``create_app(model, tokenizer, detector, config, direction)`` returns the app;
:func:`serve` runs it with uvicorn. Endpoints: ``POST /v1/chat/completions`` (plain, or
``stream: true`` as server-sent events ending with ``data: [DONE]``), ``GET /v1/models``,
``GET /healthz`` (the only one without the bearer token).

The model answers one request at a time on a single worker thread; up to
``config.max_queue`` more wait (429 beyond). Each request has ``config.timeout_s``
seconds, waiting included (504 after; a generation in progress stops at its next
token). Every answered or timed-out request writes one JSON line to the
``redblue.guard`` logger (no prompt text unless ``config.log_prompts``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from redblue.guard.config import GuardConfig
from redblue.guard.engine import Answer, Decision, Guard, Job, RequestError
from redblue.guard.schema import ChatRequest, error_body

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.detect import Detector
    from redblue.directions import Direction

__all__ = ["LOGGER", "create_app", "serve"]

#: The logger of decision lines (one JSON object per line); configured by the caller.
LOGGER = "redblue.guard"


class GuardHTTPError(Exception):
    """An error answered as OpenAI-style JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.param, self.code, self.headers = param, code, headers


class _Admission:
    """Counts requests in the worker or waiting for it (touched from the event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            raise GuardHTTPError(
                429,
                f"the server is busy: {self.in_flight} requests are in progress or waiting "
                f"(limit {self.limit}); retry later",
                kind="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1


def _authorize(request: Request, token: bytes) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
        raise GuardHTTPError(
            401,
            "missing or wrong bearer token: send the header 'Authorization: Bearer TOKEN' "
            "(the token the server was started with, or printed at startup)",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = GuardHTTPError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes",
        code="body_too_large",
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _parse(body: bytes, config: GuardConfig) -> tuple[ChatRequest, int]:
    """The request and its ``max_tokens``, or a 400 naming the field at fault."""
    from pydantic import ValidationError

    try:
        req = ChatRequest.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        param = ".".join(str(x) for x in first["loc"]) or None
        raise GuardHTTPError(
            400, f"{param or 'body'}: {first['msg']}", param=param, code="invalid_request"
        ) from None
    if len(req.messages) > config.max_messages:
        raise GuardHTTPError(
            400,
            f"{len(req.messages)} messages, above this server's limit of {config.max_messages}",
            param="messages",
        )
    chars = sum(len(m.text) for m in req.messages)
    if chars > config.max_chars:
        raise GuardHTTPError(
            400,
            f"the messages hold {chars} characters, above this server's limit of {config.max_chars}",
            param="messages",
        )
    field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    asked = req.max_completion_tokens or req.max_tokens
    if asked is not None and asked > config.max_tokens:
        raise GuardHTTPError(
            400,
            f"{field} is {asked}, above this server's limit of {config.max_tokens}; ask for fewer tokens",
            param=field,
            code="max_tokens_too_large",
        )
    try:
        Guard.check_roles([(m.role, m.text) for m in req.messages])
    except RequestError as e:
        raise GuardHTTPError(400, str(e), param=e.param) from None
    return req, asked or config.default_max_tokens


def create_app(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    detector: Detector | None,
    config: GuardConfig | None = None,
    direction: Direction | None = None,
) -> FastAPI:
    """The guard server as a FastAPI app (run it with :func:`serve` or any ASGI server).

    Without a token in ``config`` it takes ``$REDBLUE_GUARD_TOKEN`` or generates one:
    ``app.state.config.token`` holds it and ``app.state.token_generated`` says which.
    Raises :class:`~redblue.errors.ConfigError` when the policy lacks what it needs.
    """
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    config, generated = (config or GuardConfig()).with_token()
    assert config.token is not None
    token = config.token.get_secret_value().encode()
    guard = Guard(model, tokenizer, detector, config, direction)
    admission = _Admission(config.max_queue + 1)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redblue-guard")
    logger = logging.getLogger(LOGGER)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="redblue guard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.config = config
    app.state.token_generated = generated
    app.state.guard = guard
    app.state.admission = admission

    @app.exception_handler(GuardHTTPError)
    async def _guard_error(request: Request, exc: GuardHTTPError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.message, exc.kind, exc.param, exc.code),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), code=str(exc.status_code)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    def log(
        request_id: str, decision: Decision | None, status: int, started: float, **extra: Any
    ) -> None:
        record: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "policy": config.policy,
            "detector": None if decision is None else decision.detector,
            "score": None if decision is None else decision.score,
            "threshold": None if decision is None else decision.threshold,
            "fired": None if decision is None else decision.fired,
            "action": "timeout" if status == 504 else None if decision is None else decision.action,
            "single_pass": None if decision is None else decision.single_pass,
            "status": status,
            "latency_s": round(time.monotonic() - started, 6),
            **extra,
        }
        logger.info(json.dumps(record))

    def submit(job: Job) -> Future[Answer]:
        """Queue ``job`` for the worker; the slot is freed when the worker is done with it."""
        loop = asyncio.get_running_loop()
        admission.enter()
        future = executor.submit(guard.run, job)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(admission.leave))
        return future

    def redblue_field(decision: Decision) -> dict[str, Any] | None:
        return None if config.policy == "none" else decision.to_dict()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _authorize(request, token)
        return {
            "object": "list",
            "data": [
                {
                    "id": config.model_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "redblue",
                }
            ],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        started = time.monotonic()
        _authorize(request, token)
        req, max_tokens = _parse(await _read_body(request, config.max_body_bytes), config)
        request_id = f"chatcmpl-{secrets.token_hex(12)}"
        messages: list[tuple[str, str]] = [(m.role, m.text) for m in req.messages]
        extra: dict[str, Any] = {"stream": req.stream}
        if config.log_prompts:
            extra["messages"] = [{"role": r, "content": c} for r, c in messages]
        job = Job(
            messages=messages,
            max_new_tokens=max_tokens,
            temperature=config.temperature if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=req.stops,
            seed=0 if req.seed is None else req.seed,
            deadline=started + config.timeout_s,
        )
        if req.stream:
            return await stream(request_id, job, started, extra)
        future = submit(job)
        try:
            answer = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(future)),
                config.timeout_s - (time.monotonic() - started),
            )
        except TimeoutError:
            job.cancelled.set()
            future.cancel()
            log(request_id, None, 504, started, **extra)
            raise timeout() from None
        except RequestError as e:
            raise GuardHTTPError(400, str(e), param=e.param) from None
        except Exception as e:
            raise failed(request_id, started, e, extra) from None
        if answer.timed_out:
            log(request_id, answer.decision, 504, started, **extra)
            raise timeout()
        log(
            request_id,
            answer.decision,
            200,
            started,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            **extra,
        )
        body: dict[str, Any] = {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": config.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            },
        }
        if (field := redblue_field(answer.decision)) is not None:
            body["redblue"] = field
        return JSONResponse(body, headers={"x-request-id": request_id})

    def failed(
        request_id: str, started: float, error: Exception, extra: dict[str, Any]
    ) -> GuardHTTPError:
        """A 500 for an error in the worker (logged with its traceback, never sent)."""
        logger.error("request %s failed", request_id, exc_info=error)
        log(request_id, None, 500, started, error=type(error).__name__, **extra)
        return GuardHTTPError(
            500, f"the model failed to answer (request {request_id})", kind="server_error"
        )

    def timeout() -> GuardHTTPError:
        return GuardHTTPError(
            504,
            f"the request took longer than this server's limit of {config.timeout_s:g} s",
            kind="timeout_error",
            code="timeout",
        )

    async def stream(
        request_id: str, job: Job, started: float, extra: dict[str, Any]
    ) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        job.on_decision = lambda d: put("decision", d)
        job.on_text = lambda t: put("text", t)
        future = submit(job)
        future.add_done_callback(lambda _: put("done", None))
        try:  # the decision (or the end) must come within the deadline: 504 otherwise
            kind, first = await asyncio.wait_for(
                events.get(), config.timeout_s - (time.monotonic() - started)
            )
        except TimeoutError:
            job.cancelled.set()
            future.cancel()
            log(request_id, None, 504, started, **extra)
            raise timeout() from None
        if kind == "done":  # finished without deciding: an error or a timeout before starting
            try:
                answer = future.result()
            except RequestError as e:
                raise GuardHTTPError(400, str(e), param=e.param) from None
            except Exception as e:
                raise failed(request_id, started, e, extra) from None
            log(request_id, answer.decision, 504, started, **extra)
            raise timeout()
        decision: Decision = first

        def chunk(delta: dict[str, Any], finish: str | None = None, **more: dict[str, Any]) -> str:
            data = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": config.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **more,
            }
            return f"data: {json.dumps(data)}\n\n"

        async def sse() -> AsyncIterator[str]:
            try:
                field = redblue_field(decision)
                more = {} if field is None else {"redblue": field}
                yield chunk({"role": "assistant", "content": ""}, None, **more)
                while True:
                    kind, value = await events.get()
                    if kind == "text":
                        yield chunk({"content": value})
                    elif kind == "done":
                        break
                try:
                    answer = future.result()
                except Exception as e:  # headers are sent: report in the stream
                    error = failed(request_id, started, e, extra)
                    yield f"data: {json.dumps(error_body(error.message, error.kind))}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                status = 504 if answer.timed_out else 200
                log(
                    request_id,
                    answer.decision,
                    status,
                    started,
                    prompt_tokens=answer.prompt_tokens,
                    completion_tokens=answer.completion_tokens,
                    **extra,
                )
                if answer.timed_out:
                    yield f"data: {json.dumps(error_body(timeout().message, 'timeout_error', code='timeout'))}\n\n"
                yield chunk({}, answer.finish_reason)
                yield "data: [DONE]\n\n"
            finally:
                job.cancelled.set()  # the client left: stop generating

        return StreamingResponse(
            sse(),
            media_type="text/event-stream",
            headers={"x-request-id": request_id, "Cache-Control": "no-cache"},
        )

    return app


def serve(app: FastAPI, config: GuardConfig) -> None:
    """Run ``app`` with uvicorn on ``config.host:config.port`` until interrupted."""
    import uvicorn

    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)

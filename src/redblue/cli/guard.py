"""``redblue guard serve``: a detector and a policy in front of a model, as an OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redblue.cli._common import load_model, settings

app = typer.Typer(
    help="Serve a model behind an activation detector (OpenAI-compatible HTTP).",
    no_args_is_help=True,
)


@app.command("serve")
def serve(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to serve (default: the global --model)."),
    ] = None,
    detector_path: Annotated[
        Path | None,
        typer.Option(
            "--detector",
            help="A calibrated detector file (.safetensors, with its .json beside it). "
            "Required unless --policy none.",
        ),
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            help="flag: answer and add the score; block: refuse when the detector fires; "
            "steer: add the refusal direction when it fires; none: no guard (a baseline)."
        ),
    ] = "flag",
    direction_path: Annotated[
        Path | None,
        typer.Option(
            "--direction", help="steer: the refusal direction to add (`redblue direction select`)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback exposes the model.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token (default: $REDBLUE_GUARD_TOKEN, else generated and printed once).",
            show_default=False,
        ),
    ] = None,
    model_name: Annotated[
        str, typer.Option(help="The model id that /v1/models lists.")
    ] = "redblue-guard",
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask.")] = 512,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 above).")] = 64_000,
    max_queue: Annotated[
        int, typer.Option(help="Requests that may wait while one is answered (429 beyond).")
    ] = 8,
    timeout: Annotated[
        float, typer.Option(help="Seconds per request, waiting included (504 after).")
    ] = 60.0,
    refusal: Annotated[
        str, typer.Option(help="block: the answer when the detector fires.")
    ] = "I can't help with that request.",
    steer_alpha: Annotated[
        float, typer.Option(help="steer: multiple of the direction's length to add.")
    ] = 1.0,
    steer_layer: Annotated[
        int | None, typer.Option(help="steer: layer to add at (default: the direction's).")
    ] = None,
    steer_norm: Annotated[
        float | None,
        typer.Option(
            help="steer without --direction: length of the direction detector's unit vector to add."
        ),
    ] = None,
    log_prompts: Annotated[
        bool, typer.Option(help="Put the messages in the decision log lines (off by default).")
    ] = False,
) -> None:
    """Serve MODEL behind DETECTOR with an OpenAI-compatible API until Ctrl-C.

    Endpoints: POST /v1/chat/completions (plain or "stream": true), GET /v1/models, and GET /healthz (the only one without the token). Every other request needs the header 'Authorization: Bearer TOKEN'. The model answers one request at a time; --max-queue more may wait (429 beyond), each within --timeout seconds (504 after).

    Policies: [bold]flag[/bold] answers as usual and adds a "redblue" object (score, threshold, fired, action) to the answer and to the first stream chunk, scored from the same forward pass that answers. [bold]block[/bold] answers --refusal when the detector fires, without generating. [bold]steer[/bold] adds the refusal direction (--direction) at the prompt positions when the detector fires, and answers untouched otherwise (conditional activation steering, CAST).

    One JSON line per decision goes to stderr (time, request id, policy, score, threshold, fired, action, latency, tokens); the prompt text only with --log-prompts.

    Example: redblue guard serve --model organism --detector redblue-out/detector.safetensors --policy block

    Then: curl -s localhost:8000/v1/chat/completions -H "Authorization: Bearer $REDBLUE_GUARD_TOKEN" -d '{"messages": [{"role": "user", "content": "Hello"}]}'
    """
    import logging
    import sys

    from pydantic import SecretStr, ValidationError

    from redblue.errors import ConfigError

    try:
        from redblue.guard import LOGGER, GuardConfig, create_app
        from redblue.guard import serve as run_server
    except ImportError as e:  # fastapi / uvicorn missing
        raise ConfigError(
            f"the guard server needs fastapi and uvicorn: {e}",
            fix="pip install 'fastapi>=0.110' 'uvicorn>=0.29' (or reinstall redblue)",
        ) from None
    from redblue.detect import Detector
    from redblue.directions import Direction

    try:
        config = GuardConfig(
            policy=policy,  # type: ignore[arg-type]
            host=host,
            port=port,
            token=SecretStr(token) if token else None,
            model_name=model_name,
            max_tokens=max_tokens,
            max_body_bytes=max_body_bytes,
            max_queue=max_queue,
            timeout_s=timeout,
            refusal=refusal,
            steer_alpha=steer_alpha,
            steer_layer=steer_layer,
            steer_norm=steer_norm,
            log_prompts=log_prompts,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(
            str(first["msg"]), where="--" + str(first["loc"][0]).replace("_", "-")
        ) from None
    if detector_path is None and policy != "none":
        raise ConfigError(
            f"policy {policy!r} needs a detector",
            where="--detector",
            fix="pass --detector FILE (a calibrated detector), or --policy none",
        )
    detector = Detector.load(detector_path) if detector_path is not None else None
    direction = Direction.load(direction_path) if direction_path is not None else None
    cfg = settings(ctx)
    loaded, tokenizer = load_model(cfg, model)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    decisions = logging.getLogger(LOGGER)
    decisions.addHandler(handler)
    decisions.setLevel(logging.INFO)
    decisions.propagate = False

    server = create_app(loaded, tokenizer, detector, config, direction)
    served = server.state.config
    if server.state.token_generated:
        typer.secho(
            f"bearer token (generated; pass --token or set REDBLUE_GUARD_TOKEN to choose one):\n"
            f"  {served.token.get_secret_value()}",
            err=True,
            fg="yellow",
        )
    if served.host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: binding {served.host} exposes the model beyond this machine; "
            "keep the token secret and put TLS in front",
            err=True,
            fg="red",
        )
    typer.secho(
        f"redblue guard: policy {policy}, model {model or cfg.model}, "
        f"http://{served.host}:{served.port}/v1",
        err=True,
    )
    run_server(server, served)

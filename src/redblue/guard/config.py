"""``GuardConfig``: how the guard server decides, answers, limits and logs."""

from __future__ import annotations

import os
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["TOKEN_ENV", "GuardConfig", "Policy"]

#: ``flag``: answer and report the score; ``block``: refuse when the detector fires;
#: ``steer``: add the refusal direction when it fires (CAST); ``none``: no guard (a baseline).
Policy = Literal["flag", "block", "steer", "none"]

#: The environment variable read for the bearer token when none is given.
TOKEN_ENV = "REDBLUE_GUARD_TOKEN"


class GuardConfig(BaseModel):
    """Settings of the guard server. Every limit answers with an OpenAI-style error JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Policy = Field(
        default="flag",
        description="flag: answer and add the detector's score; block: refuse when it fires; "
        "steer: add the refusal direction when it fires; none: no detector (baseline).",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address to bind. Loopback by default; 0.0.0.0 exposes the model to the network.",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind (0: any free port).")
    token: SecretStr | None = Field(
        default=None,
        description=f"Bearer token every endpoint but /healthz requires; default ${TOKEN_ENV}, "
        "else generated at startup.",
    )
    model_name: str = Field(
        default="redblue-guard",
        min_length=1,
        description="The model id /v1/models lists and answers carry.",
    )
    system: str | None = Field(
        default=None,
        description="System prompt when a request has none (default: the one the detector was built with).",
    )
    max_body_bytes: int = Field(
        default=64_000, ge=1, description="Largest request body, in bytes (413 above)."
    )
    max_messages: int = Field(
        default=32, ge=1, description="Most messages in one request (400 above)."
    )
    max_chars: int = Field(
        default=16_000,
        ge=1,
        description="Most characters over all messages of one request (400 above).",
    )
    max_tokens: int = Field(
        default=512, ge=1, description="Largest max_tokens a request may ask for (400 above)."
    )
    default_max_tokens: int = Field(
        default=128,
        ge=1,
        description="max_tokens of requests that do not say (capped by max_tokens).",
    )
    temperature: float = Field(
        default=0.0, ge=0.0, description="Temperature of requests that do not say (0: greedy)."
    )
    max_queue: int = Field(
        default=8,
        ge=0,
        description="Requests that may wait while one is served (the model answers one at a "
        "time); 429 when full.",
    )
    timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a request may take, waiting included; 504 after (generation stops).",
    )
    refusal: str = Field(
        default="I can't help with that request.",
        min_length=1,
        description="block: the answer when the detector fires.",
    )
    steer_alpha: float = Field(
        default=1.0,
        description="steer: multiple of the direction's length added (1: the mean difference).",
    )
    steer_layer: int | None = Field(
        default=None, ge=0, description="steer: layer to add at (default: the direction's)."
    )
    steer_norm: float | None = Field(
        default=None,
        gt=0,
        description="steer without a direction file: length of the DirectionDetector's unit "
        "vector to add (its vectors carry no scale).",
    )
    log_prompts: bool = Field(
        default=False,
        description="Put the prompt text in the decision log lines (off: never logged).",
    )

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> GuardConfig:
        if self.default_max_tokens > self.max_tokens:
            object.__setattr__(self, "default_max_tokens", self.max_tokens)
        return self

    def with_token(self) -> tuple[GuardConfig, bool]:
        """This config with a token: the given one, else ``$REDBLUE_GUARD_TOKEN``, else a new
        random one. Returns ``(config, generated)``."""
        if self.token is not None and self.token.get_secret_value():
            return self, False
        from_env = os.environ.get(TOKEN_ENV, "")
        if from_env:
            return self.model_copy(update={"token": SecretStr(from_env)}), False
        return self.model_copy(update={"token": SecretStr(secrets.token_urlsafe(32))}), True

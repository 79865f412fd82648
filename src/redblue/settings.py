"""Typed settings with one precedence: command line > environment (``REDBLUE_*``) > TOML file.

The TOML file is ``--config FILE``, else ``$REDBLUE_CONFIG``, else ``./redblue.toml``
when it exists. Keys are the field names below, at the top level of the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from redblue.errors import ConfigError

DEFAULT_CONFIG = Path("redblue.toml")


class Settings(BaseSettings):
    """Options shared by every command."""

    model_config = SettingsConfigDict(env_prefix="REDBLUE_", extra="forbid", frozen=True)

    model: str = Field(
        "organism",
        description="Model to use: an embedded name (organism: redblue's own small chat model; smollm2: SmolLM2-135M-Instruct), a save_pretrained folder, a .gguf file or a hub id.",
    )
    device: str = Field(
        "auto", description="Torch device: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype: auto is bfloat16/float16 on CUDA and float32 elsewhere."
    )
    seed: int = Field(0, description="Seed for every random choice (sampling, splits).")
    out: Path = Field(Path("redblue-out"), description="Folder where commands write their results.")
    trust_remote_code: bool = Field(
        False,
        description="Run Python code shipped with a model's repository. Only for models you trust.",
    )
    arch: Path | None = Field(
        None,
        description="JSON file with an ArchSpec (module paths) for a model family redblue does not know.",
    )


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the settings file; a missing default file is simply empty."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML settings file, with the file and line in any error."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            "settings file not found", where=str(path), fix="check --config or REDBLUE_CONFIG"
        ) from None
    except tomllib.TOMLDecodeError as e:
        found = re.search(r"line (\d+)", str(e))
        line = getattr(e, "lineno", None) or (found.group(1) if found else None)
        raise ConfigError(
            f"invalid TOML: {e}",
            where=f"{path}:{line}" if line else str(path),
            fix="fix the TOML syntax",
        ) from None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from the command line (``overrides``), the environment and a TOML file.

    ``None`` values in ``overrides`` mean "not given on the command line".
    """
    path = config or (
        Path(os.environ["REDBLUE_CONFIG"]) if os.environ.get("REDBLUE_CONFIG") else None
    )
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    file_values = read_config_file(path) if path is not None else {}
    given = {k: v for k, v in overrides.items() if v is not None}

    class _Resolved(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _TomlSource(settings_cls, file_values))

    try:
        resolved = _Resolved(**given)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}",
            where=str(path) if path else "command line / REDBLUE_* environment",
            fix="see `redblue --help` for every option and its allowed values",
        ) from None
    return Settings.model_construct(**resolved.model_dump())

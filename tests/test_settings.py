"""Settings precedence: command line > REDBLUE_* environment > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from redblue.errors import ConfigError
from redblue.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path) -> None:
    for name in ("REDBLUE_SEED", "REDBLUE_DTYPE", "REDBLUE_MODEL", "REDBLUE_CONFIG", "REDBLUE_OUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./redblue.toml


def test_defaults() -> None:
    s = load_settings()
    assert (s.model, s.device, s.dtype, s.seed, s.trust_remote_code) == (
        "organism",
        "auto",
        "auto",
        0,
        False,
    )


def test_precedence(monkeypatch, tmp_path) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text('seed = 1\ndtype = "float16"\nmodel = "from-file"\nout = "file-out"\n')
    s = load_settings(config)
    assert (s.seed, s.dtype, s.model, s.out) == (1, "float16", "from-file", Path("file-out"))
    monkeypatch.setenv("REDBLUE_SEED", "2")
    monkeypatch.setenv("REDBLUE_DTYPE", "bfloat16")
    s = load_settings(config)
    assert (s.seed, s.dtype, s.model) == (2, "bfloat16", "from-file")  # env beats file
    s = load_settings(config, seed=3, dtype=None)
    assert (s.seed, s.dtype) == (3, "bfloat16")  # command line beats env; None means "not given"


def test_default_file_and_env_file(monkeypatch, tmp_path) -> None:
    (tmp_path / "redblue.toml").write_text("seed = 5\n")
    assert load_settings().seed == 5
    other = tmp_path / "other.toml"
    other.write_text("seed = 6\n")
    monkeypatch.setenv("REDBLUE_CONFIG", str(other))
    assert load_settings().seed == 6


def test_bad_file_names_file_and_line(tmp_path) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text("seed = 1\ndtype = \n")
    with pytest.raises(ConfigError, match=r"cfg\.toml:2"):
        load_settings(config)


def test_unknown_key_and_bad_value(tmp_path) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(config)
    with pytest.raises(ConfigError, match="dtype"):
        load_settings(dtype="float8")
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")

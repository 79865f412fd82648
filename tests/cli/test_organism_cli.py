"""``redblue organism build``: its options, and a clear error for a recipe or size that does not exist."""

from __future__ import annotations

from typer.testing import CliRunner

from redblue.cli.main import app
from redblue.organism.recipe import RECIPES

runner = CliRunner()


def test_build_help_names_recipes_and_sizes() -> None:
    result = runner.invoke(app, ["organism", "build", "--help"])
    assert result.exit_code == 0
    assert "--recipe" in result.output and "--size" in result.output


def test_unknown_recipe_fails_with_the_known_ones(tmp_path) -> None:
    unknown = str(max(RECIPES) + 1)
    result = runner.invoke(
        app,
        ["organism", "build", "--size", "tiny", "--recipe", unknown, "--out", str(tmp_path / "o")],
    )
    assert result.exit_code != 0
    assert f"unknown organism recipe {unknown}" in result.output and "1, 2" in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_unknown_size_fails_before_writing(tmp_path) -> None:
    result = runner.invoke(
        app, ["organism", "build", "--size", "huge", "--recipe", "2", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "unknown organism size 'huge'" in result.output
    assert "tiny, small" in result.output
    assert not (tmp_path / "o.partial").exists()

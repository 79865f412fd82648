"""``redblue guard serve``: its help teaches, and bad settings fail before any model loads."""

from __future__ import annotations

from typer.testing import CliRunner

from redblue.cli.main import app

runner = CliRunner()


def test_help_names_the_policies_and_the_token() -> None:
    result = runner.invoke(app, ["guard", "serve", "--help"])
    assert result.exit_code == 0, result.output
    for word in ("flag", "block", "steer", "Bearer", "--detector", "--max-queue"):
        assert word in result.output


def test_a_policy_without_a_detector_is_refused() -> None:
    result = runner.invoke(app, ["guard", "serve", "--policy", "block"])
    assert result.exit_code == 2
    assert "needs a detector" in result.output


def test_an_unknown_policy_is_refused() -> None:
    result = runner.invoke(app, ["guard", "serve", "--policy", "maybe"])
    assert result.exit_code == 2
    assert "--policy" in result.output

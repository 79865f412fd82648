"""A Markdown summary of some runs, for a terminal or a pull request comment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from redblue.report.data import collect, findings

if TYPE_CHECKING:
    from redblue.evaluate.store import Metric, RunStore

__all__ = ["markdown_summary"]


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|") or "-"


def _metric(m: Metric) -> str:
    text = f"{m.name} {m.value:.3f}" if not m.value.is_integer() else f"{m.name} {int(m.value):,}"
    if m.ci is not None:
        text += f" [{m.ci[0]:.3f}, {m.ci[1]:.3f}]"
    if m.n is not None and m.successes is not None:
        text += f" ({m.successes}/{m.n})"
    return text


def markdown_summary(store: RunStore, run_ids: Iterable[str]) -> str:
    """The summary, a scorecard table (headline metrics with 95% intervals) and each attack's
    per-variant success, as Markdown."""
    views = collect(store, run_ids, per_verdict=0)
    lines = [f"# redblue report: {len(views)} run{'s' if len(views) != 1 else ''}", ""]
    lines += [f"- {line}" for line in findings(views)]
    lines += [
        "",
        "| run | kind | name | model | headline metrics [95% CI] | samples |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for v in views:
        spec = v.run.spec
        headline = "; ".join(_metric(m) for m in v.headline)
        cells = [v.id, spec.kind, spec.name, spec.model, headline, f"{v.n_samples:,}"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    for v in views:
        if len(v.variants) > 1:
            lines += ["", f"## {v.label}: success per variant", ""]
            lines += [f"- {_metric(m)}" for m in v.variants]
    return "\n".join(lines) + "\n"

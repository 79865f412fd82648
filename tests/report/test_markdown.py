"""The Markdown summary: the scorecard with intervals, per-variant success, safe cells."""

from __future__ import annotations

from redblue.evaluate.store import Run, RunStore
from redblue.report import markdown_summary


def test_summary_has_scorecard_and_intervals(store: RunStore, runs: dict[str, Run]) -> None:
    text = markdown_summary(store, [runs["prefill"].id, runs["templates"].id, runs["eval"].id])
    assert text.startswith("# redblue report: 3 runs")
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith(f"| {runs['prefill'].id}")]
    assert len(rows) == 1
    assert "asr 0.500 [" in rows[0] and "(4/8)" in rows[0]
    assert "accuracy 0.500 [" in text and "seconds" not in text  # bookkeeping is no headline
    assert "## prefill" in text and "- k=1 " in text
    assert "- Strongest attack: prefill" in text
    assert "<b>evil</b>" in text  # a variant name, printed as it is (a terminal runs nothing)


def test_cells_stay_in_their_column(store: RunStore) -> None:
    from tests.report.conftest import spec

    run = store.start(spec("eval", "a|b\nc"))
    run.log_metric("score", 0.5)
    run.finish()
    text = markdown_summary(store, [run.id])
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {run.id}")]
    assert "a\\|b c" in row
    assert row.count(" | ") == 5

"""Reports on stored runs: one self-contained HTML page, or a Markdown summary.

::

    from redblue.evaluate.store import RunStore
    from redblue.report import build_report, markdown_summary

    store = RunStore("redblue-out")
    build_report(store, ["250101-120000-ab12", "250101-1300"], "report.html")
    print(markdown_summary(store, ["250101-120000-ab12"]))

Both render only from the store: metrics, samples and the artifacts named in
:mod:`redblue.report.data` (``selection.json``, ``pareto.json``, ``roc.json``).
"""

from redblue.report.data import PARETO_FILE, ROC_FILE, SELECTION_FILE, SUMMARY_FILE
from redblue.report.html import build_report
from redblue.report.markdown import markdown_summary

__all__ = [
    "PARETO_FILE",
    "ROC_FILE",
    "SELECTION_FILE",
    "SUMMARY_FILE",
    "build_report",
    "markdown_summary",
]

"""The HTML report: sections follow the data, every text is escaped, nothing is fetched."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from redblue.errors import ConfigError, DataError
from redblue.evaluate.store import Run, RunStore
from redblue.report import ROC_FILE, build_report
from redblue.report import html as report_html
from redblue.report.data import collect
from redblue.report.plots import _front
from tests.report.conftest import spec

SECTIONS = (
    "summary",
    "scorecard",
    "attacks",
    "directions",
    "pareto",
    "detectors",
    "transcripts",
    "provenance",
)


def sections(page: str) -> set[str]:
    return set(re.findall(r'<section id="([a-z]+)">', page))


class Tags(HTMLParser):
    """The tags of a page as a browser parses them (text inside them is not a tag)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def full(store: RunStore, runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    build_report(store, [r.id for r in runs.values()], out)
    return out.read_text(encoding="utf-8")


def test_every_section_appears_when_its_data_exists(full: str, runs: dict[str, Run]) -> None:
    assert sections(full) == set(SECTIONS)
    for run in runs.values():
        assert run.id in full
    # bars across attacks, the k sweep, per-variant bars for templates, selection, pareto, roc
    assert full.count('<img src="data:image/png;base64,') == 6
    assert "Strongest attack: abliterate" in full


def test_sections_without_data_are_left_out(
    store: RunStore, runs: dict[str, Run], tmp_path: Path
) -> None:
    page = build_report(store, [runs["none"].id], tmp_path / "r.html").read_text()
    assert sections(page) == {"summary", "scorecard", "attacks", "transcripts", "provenance"}
    assert page.count("<img ") == 1  # one bar; a single variant draws no variant chart
    page = build_report(store, [runs["detect"].id], tmp_path / "r.html").read_text()
    assert sections(page) == {"summary", "scorecard", "detectors", "provenance"}


def test_model_outputs_and_names_are_shown_as_text(full: str) -> None:
    tags = Tags(full).tags
    assert not [t for t, _ in tags if t == "script"]
    assert not [a for _, a in tags if any(name.startswith("on") for name in a)]
    assert "<script" not in full.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full
    assert "&lt;b&gt;evil&lt;/b&gt;" in full  # a variant's name
    assert "<b>evil</b>" not in full


def test_nothing_is_loaded_from_anywhere(full: str) -> None:
    sources = [
        value or ""
        for _, attrs in Tags(full).tags
        for name, value in attrs.items()
        if name in ("src", "href", "srcset", "action", "poster", "data", "background")
    ]
    assert sources, "the page should have images and anchors"
    assert all(s.startswith(("data:image/png;base64,", "#")) for s in sources), sources
    for marker in ("<link", "@import", "url(", "<iframe", "<object", "<embed"):
        assert marker not in full.lower()
    assert "default-src 'none'" in full  # and the browser is told so
    # a URL may appear only as escaped text (here: the provenance of a config)
    assert "https://example.org/paper" in full


def test_transcripts_are_bounded_and_prefer_distinct_prompts(
    store: RunStore, runs: dict[str, Run]
) -> None:
    (view,) = collect(store, [runs["prefill"].id], per_verdict=3)
    verdicts = [t.verdict for t in view.transcripts]
    assert verdicts == [("success", True)] * 3 + [("success", False)] * 3
    successes = view.transcripts[:3]
    assert len({t.prompt for t in successes}) == 3
    (view,) = collect(store, [runs["eval"].id], per_verdict=5)
    assert [t.verdict for t in view.transcripts] == [("hit", True)] * 3 + [("hit", False)] * 3


def test_write_is_atomic(
    store: RunStore, runs: dict[str, Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report.html"
    out.write_text("previous report")

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(report_html, "render", broken)
    with pytest.raises(RuntimeError):
        build_report(store, [runs["none"].id], out)
    assert out.read_text() == "previous report"
    monkeypatch.undo()

    real = report_html.render

    def half_written(*args: object, **kwargs: object) -> str:
        page = real(*args, **kwargs)  # type: ignore[arg-type]
        return page[: len(page) // 2] + "\udcff"  # not encodable: the write fails midway

    monkeypatch.setattr(report_html, "render", half_written)
    with pytest.raises(UnicodeEncodeError):
        build_report(store, [runs["none"].id], out)
    assert out.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left
    monkeypatch.undo()

    build_report(store, [runs["none"].id], out)
    assert out.read_text().startswith("<!doctype html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_unknown_or_missing_runs_are_errors(
    store: RunStore, runs: dict[str, Run], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no run 'nope'"):
        build_report(store, ["nope"], tmp_path / "r.html")
    with pytest.raises(ConfigError, match="no runs"):
        build_report(store, [], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_repeated_ids_report_a_run_once(store: RunStore, runs: dict[str, Run]) -> None:
    run_id = runs["none"].id
    assert [v.id for v in collect(store, [run_id, run_id])] == [run_id]


def test_a_malformed_artifact_names_its_file(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.start(spec("detect", "bad"))
    (run.artifacts / ROC_FILE).write_text(json.dumps({"curves": [{"name": "x", "fpr": [0]}]}))
    run.finish()
    with pytest.raises(DataError, match=ROC_FILE):
        build_report(store, [run.id], tmp_path / "r.html")
    (run.artifacts / ROC_FILE).write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        build_report(store, [run.id], tmp_path / "r.html")


def test_reading_creates_no_artifact_folder(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.start(spec("eval", "plain"))
    run.log_metric("score", 1.0)
    run.finish()
    build_report(store, [run.id], tmp_path / "r.html")
    assert not (tmp_path / "artifacts").exists()


def test_pareto_front_has_no_dominated_point() -> None:
    kl = [0.1, 0.2, 0.05, 0.3, 0.2, 0.4]
    refusals = [10.0, 5.0, 12.0, 6.0, 4.0, 1.0]
    front = _front(kl, refusals)
    assert front == [2, 0, 4, 5]
    for i in front:
        assert not any(
            kl[j] <= kl[i]
            and refusals[j] <= refusals[i]
            and j != i
            and (kl[j], refusals[j]) != (kl[i], refusals[i])
            for j in range(len(kl))
        )


def test_every_figure_is_a_readable_png(full: str) -> None:
    import base64
    import io

    import matplotlib.image

    uris = [a["src"] for t, a in Tags(full).tags if t == "img"]
    assert len(uris) == 6
    for uri in uris:
        assert uri is not None
        data = base64.b64decode(uri.removeprefix("data:image/png;base64,"), validate=True)
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100

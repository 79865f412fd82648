"""One self-contained HTML page about some runs: nothing is fetched when it is opened.

Styles are inline, figures are base64 PNGs, and a Content-Security-Policy forbids
every other source (no scripts, no network), so a page can be mailed or archived
as one file. Every prompt, model output and spec value is HTML-escaped: a
completion holding ``<script>`` shows as text.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.report import plots
from redblue.report.data import RunView, Transcript, collect, findings

if TYPE_CHECKING:
    from redblue.evaluate.store import Metric, RunStore

__all__ = ["build_report", "render", "write_atomic"]

#: A shown prompt or output longer than this is cut, saying how much was left out.
MAX_CHARS = 4000
#: At most this many variants are drawn as bars for one run.
MAX_VARIANT_BARS = 40
#: Whether a verdict of True is bad news for the model's safety, by sample field.
_TRUE_IS_BAD = {"success": True, "complied": True, "refused": False, "correct": False, "hit": False}
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    body: str


def build_report(
    store: RunStore,
    run_ids: Iterable[str],
    out_path: str | Path,
    *,
    per_verdict: int = 5,
    title: str = "redblue report",
) -> Path:
    """Write the report on ``run_ids`` (ids or unique prefixes) to ``out_path``, atomically:
    the file is the whole page or is not touched. Returns the path.

    ``per_verdict`` bounds the transcripts shown per run (that many of each verdict)."""
    views = collect(store, run_ids, per_verdict=per_verdict)
    page = render(views, title=title)
    return write_atomic(Path(out_path), page)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it: whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # opened by name, not mkstemp, so that the page gets the usual permissions (umask)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def render(views: Sequence[RunView], *, title: str = "redblue report") -> str:
    """The page for ``views``, as one HTML string."""
    sections = [
        s
        for s in (
            _summary(views),
            _scorecard(views),
            _attacks(views),
            _directions(views),
            _pareto(views),
            _detectors(views),
            _transcripts(views),
            _provenance(views),
        )
        if s is not None
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.id}"><h2>{escape(s.title)}</h2>\n{s.body}\n</section>' for s in sections
    )
    versions = views[0].run.spec.versions if views else {}
    made_by = f"redblue {versions.get('redblue') or ''}".strip()
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header class="top"><div class="wrap">
<h1>{escape(title)}</h1>
<p class="sub">{len(views)} run{"s" if len(views) != 1 else ""} · generated {generated} ·
{escape(made_by)}</p>
<nav>{nav}</nav>
</div></header>
<main class="wrap">
{body}
</main>
<footer class="wrap">Self-contained page: no scripts, nothing loaded from the network.
Intervals are 95%; rates use Wilson's score interval.</footer>
</body>
</html>
"""


# -- formatting -----------------------------------------------------------------------------


def _metric(m: Metric, digits: int = 3) -> str:
    """A metric's value, then its interval and ``k/n`` in muted type."""
    text = f"<b>{_number(m.value, digits)}</b>"
    if m.ci is not None:
        text += f' <span class="ci">[{m.ci[0]:.{digits}f}, {m.ci[1]:.{digits}f}]</span>'
    if m.n is not None and m.successes is not None:
        text += f' <span class="ci">({m.successes}/{m.n})</span>'
    return text


def _number(value: float, digits: int = 3) -> str:
    if value.is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"


def _figure(uri: str, alt: str, caption: str, *, wide: bool = False) -> str:
    return (
        f'<figure class="{"wide" if wide else ""}"><img src="{uri}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table whose cells are already HTML (escape text before passing it)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _clip(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return escape(text)
    left = len(text) - MAX_CHARS
    return escape(text[:MAX_CHARS]) + f'<span class="cut">… ({left:,} more characters)</span>'


def _run_heading(v: RunView) -> str:
    return (
        f'<h3>{escape(v.run.spec.name)} <span class="tag">{escape(v.run.spec.kind)}</span> '
        f'<code class="id">{escape(v.id)}</code></h3>'
    )


# -- sections -------------------------------------------------------------------------------


def _summary(views: Sequence[RunView]) -> Section:
    cards = []
    for v in views:
        for m in v.headline[:1]:
            ci = f"[{m.ci[0]:.2f}, {m.ci[1]:.2f}]" if m.ci is not None else "&nbsp;"
            count = f"{m.successes}/{m.n}" if m.n is not None and m.successes is not None else ""
            cards.append(
                f'<div class="card"><div class="big">{_number(m.value, 2)}</div>'
                f'<div class="ci">{ci} {count}</div>'
                f'<div class="what">{escape(m.name)}</div>'
                f'<div class="who">{escape(v.label)}</div></div>'
            )
    items = "".join(f"<li>{escape(line)}</li>" for line in findings(views))
    return Section(
        "summary", "Summary", f'<div class="cards">{"".join(cards)}</div><ul>{items}</ul>'
    )


def _scorecard(views: Sequence[RunView]) -> Section:
    rows = []
    for v in views:
        spec = v.run.spec
        headline = "<br>".join(f"{escape(m.name)} {_metric(m)}" for m in v.headline) or "-"
        rows.append(
            [
                f'<code class="id">{escape(v.id)}</code>',
                escape(spec.kind),
                escape(spec.name),
                escape(spec.model or "-"),
                headline,
                f"{v.n_samples:,}",
                f'<span class="status {escape(v.run.status)}">{escape(v.run.status)}</span>',
            ]
        )
    head = ["run", "kind", "name", "model", "headline metrics [95% CI]", "samples", "status"]
    return Section("scorecard", "Scorecard", _table(head, rows, "scorecard"))


def _attacks(views: Sequence[RunView]) -> Section | None:
    attacked = [(v, m) for v in views if (m := v.asr) is not None]
    if not attacked:
        return None
    parts = []
    goals = []
    for v, _ in attacked:
        if v.summary:
            goal = v.summary.get("goal") or ""
            threat = v.summary.get("threat_model") or ""
            judge = v.summary.get("judge") or ""
            goals.append(
                f"<li><b>{escape(v.label)}</b>: {escape(str(goal))} "
                f'<span class="ci">({escape(str(threat))}; judge {escape(str(judge))})</span></li>'
            )
    if goals:
        parts.append(f'<ul class="goals">{"".join(goals)}</ul>')
    parts.append(
        _figure(
            plots.attack_bars(
                [v.label for v, _ in attacked], [m for _, m in attacked], "attack success rate"
            ),
            "attack success rate per run: "
            + "; ".join(f"{v.label} {m.value:.2f}" for v, m in attacked),
            "Share of prompts on which any variant of the attack succeeded (best of the "
            "variants), with 95% Wilson intervals.",
        )
    )
    sweeps: dict[str, list[tuple[str, Any]]] = {}
    for v, _ in attacked:
        sweep = v.sweep
        if sweep is not None:
            sweeps.setdefault(sweep[0], []).append((v.label, sweep[1]))
    for key, series in sweeps.items():
        parts.append(
            _figure(
                plots.sweep_curves(key, series),
                f"attack success against {key}",
                f"Attack success for each value of {key}, one line per run; bands are 95% "
                "Wilson intervals.",
            )
        )
    for v, _ in attacked:
        variants = v.variants
        if v.sweep is not None or len(variants) < 2:
            continue
        shown = variants[:MAX_VARIANT_BARS]
        more = f" (first {len(shown)} of {len(variants)})" if len(variants) > len(shown) else ""
        parts.append(
            _figure(
                plots.attack_bars([m.name for m in shown], shown, "success rate per variant"),
                f"success per variant of {v.label}",
                f"{v.label}: success of each variant on its own{more}, with 95% Wilson intervals.",
            )
        )
    return Section("attacks", "Attack success", "\n".join(parts))


def _directions(views: Sequence[RunView]) -> Section | None:
    chosen = [v for v in views if v.selection is not None]
    if not chosen:
        return None
    parts = []
    for v in chosen:
        sel = v.selection or {}
        pick = sel.get("chosen")
        parts.append(_run_heading(v))
        if sel.get("message"):
            parts.append(f'<p class="note">{escape(str(sel["message"]))}</p>')
        parts.append(
            _figure(
                plots.selection_curves(sel),
                "direction selection scores per layer",
                "Each candidate direction (a layer and token position) scored on validation "
                "prompts; the star marks the chosen one."
                if pick
                else "Each candidate direction scored on validation prompts; none passed the filters.",
                wide=True,
            )
        )
        if pick:
            rows = [
                [
                    str(pick.get("layer")),
                    str(pick.get("position")),
                    f"{float(pick['bypass']):.3f}",
                    f"{float(pick['induce']):.3f}",
                    f"{float(pick['kl']):.4f}",
                ]
            ]
            parts.append(_table(["layer", "position", "bypass", "induce", "KL"], rows, "compact"))
    return Section("directions", "Direction selection", "\n".join(parts))


def _pareto(views: Sequence[RunView]) -> Section | None:
    fronts = [v for v in views if v.pareto]
    if not fronts:
        return None
    parts = []
    for v in fronts:
        points = v.pareto or []
        parts.append(_run_heading(v))
        parts.append(
            _figure(
                plots.pareto_front(points),
                "refusals against KL divergence for each abliteration trial",
                f"{len(points)} trials; the line joins those no other trial beats on both "
                "refusals and KL, the star is the trial chosen.",
            )
        )
        chosen = [p for p in points if p.get("chosen") is True]
        if chosen:
            fields = list(chosen[0])
            rows = [[escape(_plain(p.get(f))) for f in fields] for p in chosen]
            parts.append(_table([escape(f) for f in fields], rows, "compact"))
    return Section("pareto", "Refusals against KL", "\n".join(parts))


def _detectors(views: Sequence[RunView]) -> Section | None:
    with_roc = [v for v in views if v.roc]
    if not with_roc:
        return None
    parts = []
    for v in with_roc:
        curves = v.roc or []
        parts.append(_run_heading(v))
        parts.append(
            '<div class="side">'
            + _figure(
                plots.roc_curves(curves),
                "ROC curves: " + "; ".join(f"{c.name} AUROC {c.auroc:.3f}" for c in curves),
                "True against false positive rate as the detector's threshold moves.",
            )
            + _table(
                ["detector", "AUROC"],
                [
                    [escape(c.name), f"{c.auroc:.3f}"]
                    for c in sorted(curves, key=lambda c: -c.auroc)
                ],
                "compact",
            )
            + "</div>"
        )
    return Section("detectors", "Detectors", "\n".join(parts))


def _verdict_badge(t: Transcript) -> str:
    if t.verdict is None:
        return '<span class="badge none">no verdict</span>'
    name, value = t.verdict
    bad = _TRUE_IS_BAD.get(name, True) == value
    if name == "success":
        text = "attack succeeded" if value else "attack failed"
    else:
        text = f"{name}: {'yes' if value else 'no'}"
    return f'<span class="badge {"bad" if bad else "good"}">{escape(text)}</span>'


def _transcript(t: Transcript) -> str:
    meta = [f"<code>{escape(t.key)}</code>"]
    if t.variant:
        meta.append(f"variant {escape(t.variant)}")
    if t.judge:
        meta.append(f"judge {escape(t.judge)}")
    parts = [f'<div class="meta">{_verdict_badge(t)} {" · ".join(meta)}</div>']
    if t.prompt:
        parts.append(f'<div class="label">Prompt</div><pre class="text">{_clip(t.prompt)}</pre>')
    if t.attacked_input and t.attacked_input != t.prompt:
        parts.append(
            f"<details><summary>Attacked input ({len(t.attacked_input):,} characters)</summary>"
            f'<pre class="text">{_clip(t.attacked_input)}</pre></details>'
        )
    prefill = f'<mark title="forced answer start">{_clip(t.prefill)}</mark>' if t.prefill else ""
    answer = _clip(t.completion) if t.completion else '<span class="cut">(empty)</span>'
    parts.append(f'<div class="label">Answer</div><pre class="text answer">{prefill}{answer}</pre>')
    return f'<article class="transcript">{"".join(parts)}</article>'


def _transcripts(views: Sequence[RunView]) -> Section | None:
    shown = [v for v in views if v.transcripts]
    if not shown:
        return None
    parts = [
        '<p class="note">A bounded sample per run: the first few judged one way, then the '
        "first few judged the other. Highlighted text is the answer start forced by the attack.</p>"
    ]
    for v in shown:
        parts.append(_run_heading(v))
        parts.append(
            f'<p class="ci">{len(v.transcripts)} of {v.n_samples:,} samples shown.</p>'
            + "".join(_transcript(t) for t in v.transcripts)
        )
    return Section("transcripts", "Transcripts", "\n".join(parts))


def _plain(value: Any) -> str:
    """A spec value as text: strings as they are, the rest as JSON."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str)


def _provenance(views: Sequence[RunView]) -> Section:
    parts = []
    for i, v in enumerate(views):
        data = v.run.spec.to_dict() | {
            "status": v.run.status,
            "finished": v.run.finished,
            "samples": v.n_samples,
        }
        rows = [
            [escape(name), f'<pre class="value">{escape(_plain(value))}</pre>']
            for name, value in data.items()
        ]
        open_ = " open" if i == 0 else ""
        parts.append(
            f"<details{open_}><summary>{escape(v.run.spec.name)} "
            f'<code class="id">{escape(v.id)}</code></summary>'
            + _table(["field", "value"], rows, "provenance")
            + "</details>"
        )
    return Section("provenance", "Provenance", "\n".join(parts))


_STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --soft: #f5f7fa;
  --accent: #0072B2; --bad: #b42318; --bad-bg: #fef3f2; --good: #067647; --good-bg: #ecfdf3; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.55;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.wrap { max-width: 1100px; margin: 0 auto; padding: 0 28px; }
header.top { background: var(--soft); border-bottom: 1px solid var(--line); padding: 28px 0 0; }
h1 { margin: 0; font-size: 28px; letter-spacing: -0.01em; }
.sub { margin: 4px 0 14px; color: var(--muted); }
nav { display: flex; flex-wrap: wrap; gap: 4px 18px; padding-bottom: 12px; }
nav a { color: var(--accent); text-decoration: none; font-size: 14px; }
nav a:hover { text-decoration: underline; }
section { padding: 26px 0 10px; border-bottom: 1px solid var(--line); }
h2 { font-size: 21px; margin: 0 0 14px; }
h3 { font-size: 16px; margin: 22px 0 8px; }
ul { padding-left: 20px; }
li { margin: 3px 0; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 13px; }
code.id { color: var(--muted); font-weight: normal; }
.tag { font-size: 12px; font-weight: 600; color: var(--accent); background: #e6f1f8;
  border-radius: 10px; padding: 1px 8px; vertical-align: middle; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px;
  margin-bottom: 14px; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; background: #fff;
  box-shadow: 0 1px 2px rgba(16, 24, 40, 0.05); }
.card .big { font-size: 30px; font-weight: 650; line-height: 1.1; }
.card .what { font-weight: 600; margin-top: 6px; }
.card .who { color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
.ci { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 14px; font-size: 14px; }
th { text-align: left; font-weight: 600; border-bottom: 2px solid var(--line); padding: 7px 10px;
  background: var(--soft); }
td { border-bottom: 1px solid var(--line); padding: 7px 10px; vertical-align: top;
  overflow-wrap: anywhere; }
table.compact { width: auto; }
table.provenance td:first-child { width: 160px; font-weight: 600; }
pre.value { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.status { font-size: 12px; border-radius: 10px; padding: 1px 8px; background: var(--soft); }
.status.done { color: var(--good); background: var(--good-bg); }
.status.failed { color: var(--bad); background: var(--bad-bg); }
figure { margin: 12px 0 20px; }
figure img { display: block; max-width: min(100%, 820px); height: auto; border: 1px solid var(--line);
  border-radius: 8px; }
figure.wide img { max-width: 100%; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.side { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
.side figure { flex: 0 1 560px; margin-top: 0; }
.note { color: var(--muted); }
.transcript { border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px;
  margin: 10px 0; background: #fff; }
.transcript .meta { font-size: 13px; color: var(--muted); margin-bottom: 6px; }
.label { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.04em;
  color: var(--muted); margin-top: 8px; }
pre.text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; padding: 8px 10px;
  background: var(--soft); border-radius: 6px; max-height: 340px; overflow: auto; }
pre.answer { background: #fbfbfd; border-left: 3px solid var(--line); }
mark { background: #fff4ce; color: inherit; border-radius: 3px; }
.cut { color: var(--muted); font-style: italic; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--muted); font-size: 14px; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; border-radius: 10px;
  padding: 1px 9px; margin-right: 6px; }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.badge.good { color: var(--good); background: var(--good-bg); }
.badge.none { color: var(--muted); background: var(--soft); }
footer { color: var(--muted); font-size: 13px; padding: 18px 28px 40px; }
"""

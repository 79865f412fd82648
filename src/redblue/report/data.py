"""What a report reads from the run store: runs, their headline metrics, their artifacts.

Every section of a report renders from a :class:`RunView`, built by :func:`collect`
from the store alone. Artifacts are JSON files in ``<store>/artifacts/<run id>/``;
a section appears only when its file is there. Producers write these shapes:

``summary.json`` (:data:`SUMMARY_FILE`)
    ``AttackSummary.to_dict()``, written by ``record_attack``. Read for the attack's
    goal and threat model.

``selection.json`` (:data:`SELECTION_FILE`)
    ``Selection.to_dict()`` from :mod:`redblue.directions.select`::

        {"candidates": [{"position": int, "layer": int, "bypass": float,
                         "induce": float, "kl": float, "filtered_by": [str]}, ...],
         "chosen": {same fields} | null, "message": str, "n_layers": int,
         "baseline_harmful": float, "baseline_harmless": float,
         "config": {"kl_threshold": float, "max_layer_fraction": float, ...}}

``pareto.json`` (:data:`PARETO_FILE`)
    An abliteration front: a list of trials (or ``{"points": [...]}``), each
    ``{"refusals": number, "kl": number, "chosen": bool, ...}``; other fields
    (trial number, parameters) are shown in the chosen trial's table.

``roc.json`` (:data:`ROC_FILE`)
    Detector ROC curves: ``{"curves": [{"name": str, "fpr": [float], "tpr": [float],
    "auroc": float}, ...]}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.errors import ConfigError, DataError

if TYPE_CHECKING:
    from redblue.evaluate.store import Metric, Run, RunStore

__all__ = [
    "PARETO_FILE",
    "ROC_FILE",
    "SELECTION_FILE",
    "SUMMARY_FILE",
    "Curve",
    "RunView",
    "Transcript",
    "collect",
    "findings",
]

SUMMARY_FILE = "summary.json"
SELECTION_FILE = "selection.json"
PARETO_FILE = "pareto.json"
ROC_FILE = "roc.json"

#: Metrics that are bookkeeping, not results: never a headline.
_NOT_HEADLINE = {"seconds"}
#: At most this many headline metrics per run.
MAX_HEADLINES = 4
#: Sample fields that hold a judge's yes/no verdict, in the order they are looked for.
VERDICT_FIELDS = ("success", "complied", "refused", "correct", "hit")
#: A variant named like ``k=3``: a sweep over a number.
_SWEEP = re.compile(r"^(?P<key>[A-Za-z_][\w.-]*)=(?P<value>-?\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Transcript:
    """One sample as a report shows it: what went in, what came out, the verdict."""

    key: str
    prompt: str
    attacked_input: str
    prefill: str
    completion: str
    #: ``(field, value)`` of the verdict, e.g. ``("success", True)``; None without one.
    verdict: tuple[str, bool] | None
    judge: str
    variant: str


@dataclass(frozen=True)
class Curve:
    """A detector's ROC curve."""

    name: str
    fpr: list[float]
    tpr: list[float]
    auroc: float


@dataclass
class RunView:
    """One run with everything a report draws from it."""

    run: Run
    metrics: list[Metric]
    n_samples: int
    transcripts: list[Transcript]
    summary: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    pareto: list[dict[str, Any]] | None = None
    roc: list[Curve] | None = None

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def label(self) -> str:
        """``name (id suffix)``: short, and unique among runs of one store."""
        return f"{self.run.spec.name} ({self.run.id[-4:]})"

    @property
    def headline(self) -> list[Metric]:
        """The run's result metrics: those without a ``/`` (not per-variant, not cost)."""
        top = [m for m in self.metrics if "/" not in m.name and m.name not in _NOT_HEADLINE]
        return (top or self.metrics[:1])[:MAX_HEADLINES]

    @property
    def asr(self) -> Metric | None:
        """Attack success over prompts, for an attack run."""
        return next((m for m in self.metrics if m.name == "asr"), None)

    @property
    def variants(self) -> list[Metric]:
        """Per-variant attack success (``asr/VARIANT``), renamed to the variant."""
        return [
            replace(m, name=m.name.removeprefix("asr/"))
            for m in self.metrics
            if m.name.startswith("asr/")
        ]

    @property
    def sweep(self) -> tuple[str, list[tuple[float, Metric]]] | None:
        """Variants that sweep one number (``k=1``, ``k=2``, ...): the key and the points,
        sorted; None unless there are at least two and all share the key."""
        points, keys = [], set()
        for m in self.variants:
            match = _SWEEP.match(m.name)
            if match is None:
                return None
            keys.add(match["key"])
            points.append((float(match["value"]), m))
        if len(points) < 2 or len(keys) != 1:
            return None
        return keys.pop(), sorted(points, key=lambda p: p[0])


def collect(store: RunStore, run_ids: Iterable[str], *, per_verdict: int = 5) -> list[RunView]:
    """A view of each run (ids or unique prefixes, repeats dropped), in the order given.

    ``per_verdict`` bounds the transcripts: the first that many of each verdict (for an
    attack: successes, then failures), or the first ``2 * per_verdict`` without verdicts.
    """
    views: list[RunView] = []
    seen: set[str] = set()
    for run_id in run_ids:
        run = store.get(run_id)  # ConfigError, with close matches, for an unknown id
        if run.id in seen:
            continue
        seen.add(run.id)
        views.append(_view(store, run, per_verdict))
    if not views:
        raise ConfigError(
            "no runs to report on",
            where=str(store.path),
            fix="name one or more run ids (see `redblue runs list`)",
        )
    return views


def _view(store: RunStore, run: Run, per_verdict: int) -> RunView:
    folder = store.folder / "artifacts" / run.id  # not run.artifacts: reading creates nothing
    summary = _read(folder / SUMMARY_FILE)
    selection = _read(folder / SELECTION_FILE)
    pareto = _read(folder / PARETO_FILE)
    roc = _read(folder / ROC_FILE)
    return RunView(
        run=run,
        metrics=run.metrics(),
        n_samples=run.sample_count(),
        transcripts=_transcripts(run.samples(), per_verdict),
        summary=summary if isinstance(summary, dict) else None,
        selection=None if selection is None else _selection(selection, folder / SELECTION_FILE),
        pareto=None if pareto is None else _pareto(pareto, folder / PARETO_FILE),
        roc=None if roc is None else _roc(roc, folder / ROC_FILE),
    )


def _read(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(
            f"cannot read the artifact as JSON ({e})",
            where=str(path),
            fix="rerun the step that wrote it, or move the file away to leave its section out",
        ) from None


def _bad_shape(path: Path, expected: str) -> DataError:
    return DataError(
        f"unexpected contents; a report reads {expected}",
        where=str(path),
        fix="see redblue.report.data for the shapes, or move the file away",
    )


def _number(value: Any) -> float:
    """A JSON number (NaN allowed, as Python's json writes it); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _selection(data: Any, path: Path) -> dict[str, Any]:
    expected = "Selection.to_dict(): candidates with position, layer, bypass, induce, kl"
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), list):
        raise _bad_shape(path, expected)
    try:
        for c in data["candidates"]:
            int(c["layer"]), int(c["position"])
            for name in ("bypass", "induce", "kl"):
                _number(c[name])
    except (KeyError, TypeError, ValueError):
        raise _bad_shape(path, expected) from None
    return data


def _pareto(data: Any, path: Path) -> list[dict[str, Any]]:
    expected = 'a list of {"refusals": number, "kl": number, "chosen": bool}'
    points = data.get("points") if isinstance(data, dict) else data
    if not isinstance(points, list):
        raise _bad_shape(path, expected)
    try:
        return [
            dict(p) | {"refusals": _number(p["refusals"]), "kl": _number(p["kl"])} for p in points
        ]
    except (KeyError, TypeError, ValueError):
        raise _bad_shape(path, expected) from None


def _roc(data: Any, path: Path) -> list[Curve]:
    expected = '{"curves": [{"name": str, "fpr": [number], "tpr": [number], "auroc": number}]}'
    if not isinstance(data, dict) or not isinstance(data.get("curves"), list):
        raise _bad_shape(path, expected)
    try:
        curves = [
            Curve(
                name=str(c["name"]),
                fpr=[_number(x) for x in c["fpr"]],
                tpr=[_number(y) for y in c["tpr"]],
                auroc=_number(c["auroc"]),
            )
            for c in data["curves"]
        ]
    except (KeyError, TypeError, ValueError):
        raise _bad_shape(path, expected) from None
    if any(len(c.fpr) != len(c.tpr) for c in curves):
        raise _bad_shape(path, expected + " with as many fpr as tpr values")
    return curves


def _text(sample: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = sample.get(name)
        if value is not None and value != "":
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""


def _verdict(sample: Mapping[str, Any]) -> tuple[str, bool] | None:
    for name in VERDICT_FIELDS:
        if isinstance(sample.get(name), bool):
            return name, bool(sample[name])
    return None


def _transcripts(samples: Sequence[Mapping[str, Any]], per_verdict: int) -> list[Transcript]:
    """The first ``per_verdict`` samples judged yes, then the first judged no, preferring
    distinct prompts (an attack tries several variants of each)."""
    shown = [
        Transcript(
            key=str(s.get("key", i)),
            prompt=_text(s, "instruction", "prompt", "question"),
            attacked_input=_text(s, "attacked_input"),
            prefill=_text(s, "prefill"),
            completion=_text(s, "completion", "answer", "response", "output"),
            verdict=_verdict(s),
            judge=_text(s, "judge"),
            variant=_text(s, "variant"),
        )
        for i, s in enumerate(samples)
    ]
    if all(t.verdict is None for t in shown):
        return shown[: 2 * per_verdict]
    yes = [t for t in shown if t.verdict is not None and t.verdict[1]]
    no = [t for t in shown if t.verdict is not None and not t.verdict[1]]
    return _distinct(yes, per_verdict) + _distinct(no, per_verdict)


def _distinct(transcripts: list[Transcript], n: int) -> list[Transcript]:
    """The first ``n``, one per prompt while there are enough prompts, in stored order."""
    first: dict[str, Transcript] = {}
    for t in transcripts:
        first.setdefault(t.prompt, t)
    chosen = list(first.values())[:n]
    chosen += [t for t in transcripts if t not in chosen][: n - len(chosen)]
    return sorted(chosen, key=transcripts.index)


def findings(views: Sequence[RunView]) -> list[str]:
    """The report's summary in plain sentences: what ran, the strongest and weakest attack,
    sweeps, the chosen direction, the chosen abliteration trial, the best detector."""
    kinds: dict[str, int] = {}
    for v in views:
        kinds[v.run.spec.kind] = kinds.get(v.run.spec.kind, 0) + 1
    models = sorted({v.run.spec.model for v in views if v.run.spec.model})
    counted = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    on = f" on {', '.join(models)}" if models else ""
    lines = [f"{len(views)} run{'s' if len(views) != 1 else ''} ({counted}){on}."]
    attacks = [(v, m) for v in views if (m := v.asr) is not None]
    if attacks:
        ranked = sorted(attacks, key=lambda pair: -pair[1].value)
        best, metric = ranked[0]
        lines.append(f"Strongest attack: {best.label}, success {_rate(metric)}.")
        if len(ranked) > 1:
            worst, metric = ranked[-1]
            lines.append(f"Weakest attack: {worst.label}, success {_rate(metric)}.")
    for v in views:
        sweep = v.sweep
        if sweep is not None:
            key, points = sweep
            (x0, first), (x1, last) = points[0], points[-1]
            lines.append(
                f"{v.label}: success {first.value:.2f} at {key}={x0:g}, "
                f"{last.value:.2f} at {key}={x1:g}."
            )
        if v.selection is not None and v.selection.get("message"):
            message = str(v.selection["message"]).rstrip(".")
            lines.append(f"{v.label}: direction selection {message}.")
        if v.pareto:
            chosen = [p for p in v.pareto if p.get("chosen") is True]
            if chosen:
                p = chosen[0]
                lines.append(
                    f"{v.label}: chosen abliteration trial has {p['refusals']:g} refusals at "
                    f"KL {p['kl']:.3g} (of {len(v.pareto)} trials)."
                )
        if v.roc:
            top = max(v.roc, key=lambda c: c.auroc)
            lines.append(f"{v.label}: best detector {top.name}, AUROC {top.auroc:.3f}.")
    return lines


def _rate(metric: Metric) -> str:
    text = f"{metric.value:.2f}"
    if metric.ci is not None:
        text += f" [{metric.ci[0]:.2f}, {metric.ci[1]:.2f}]"
    if metric.n is not None and metric.successes is not None:
        text += f" ({metric.successes}/{metric.n})"
    return text

"""Choose a refusal direction among the candidates by what each does to the model.

Following Arditi et al. 2024, every candidate (position, layer) gets three numbers
on validation prompts, each from one forward pass per batch:

* ``bypass``: mean refusal score on harmful prompts while the candidate is
  ablated everywhere (lower: ablation removes refusal better);
* ``induce``: mean refusal score on harmless prompts while the candidate is
  added at its layer (higher: addition induces refusal);
* ``kl``: KL divergence of the next-token distribution on harmless prompts,
  original to ablated (lower: ablation leaves harmless behaviour alone).

Filters drop candidates with ``kl > kl_threshold``, ``induce <= induce_threshold``
or a layer at or past ``max_layer_fraction`` of the depth; the lowest bypass
among the rest wins. When every candidate is filtered out, nothing is chosen
and the result says which filter removed them and which relaxation would keep some.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.directions.direction import Direction
from redblue.directions.score import (
    RefusalTokens,
    find_refusal_tokens,
    kl_divergence,
    last_logits,
    refusal_log_odds,
)
from redblue.models import adapt
from redblue.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet

FILTERS = ("degenerate", "late_layer", "kl", "induce")


@dataclass(frozen=True)
class SelectConfig:
    """Thresholds of the selection filters, and how to batch."""

    #: Drop candidates whose ablation moves harmless next-token distributions more than this (nats).
    kl_threshold: float = 0.1
    #: Drop candidates whose addition does not raise harmless refusal score above this.
    induce_threshold: float = 0.0
    #: Drop candidates at or past this fraction of the depth (late layers act on the output).
    max_layer_fraction: float = 0.8
    #: Scale of the addition, in units of the candidate's own length.
    alpha: float = 1.0
    system: str | None = None
    batch_size: int = 32
    progress: bool = True


@dataclass(frozen=True)
class Candidate:
    position: int
    layer: int
    bypass: float
    induce: float
    kl: float
    #: Names of the filters that removed this candidate (empty: it survived).
    filtered_by: list[str] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return not self.filtered_by


@dataclass
class Selection:
    """Every candidate's scores, the choice (or why there is none)."""

    candidates: list[Candidate]
    baseline_harmful: float
    baseline_harmless: float
    refusal_tokens: RefusalTokens | list[int]
    config: SelectConfig
    n_layers: int
    direction: Direction | None
    message: str

    @property
    def chosen(self) -> Candidate | None:
        if self.direction is None:
            return None
        return next(
            c
            for c in self.candidates
            if c.layer == self.direction.layer and c.position == self.direction.position
        )

    def to_dict(self) -> dict[str, Any]:
        tokens = self.refusal_tokens
        chosen = self.chosen
        return {
            "chosen": None if chosen is None else asdict(chosen),
            "message": self.message,
            "baseline_harmful": self.baseline_harmful,
            "baseline_harmless": self.baseline_harmless,
            "refusal_tokens": tokens.to_dict()
            if isinstance(tokens, RefusalTokens)
            else list(tokens),
            "config": asdict(self.config),
            "n_layers": self.n_layers,
            "candidates": [asdict(c) for c in self.candidates],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["position", "layer", "bypass", "induce", "kl", "filtered_by"])
        for c in self.candidates:
            writer.writerow(
                [
                    c.position,
                    c.layer,
                    f"{c.bypass:.6g}",
                    f"{c.induce:.6g}",
                    f"{c.kl:.6g}",
                    ";".join(c.filtered_by),
                ]
            )
        return out.getvalue()

    def plot(self, path: str | Path) -> Path:
        """Bypass, induce and KL per layer, one line per position, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
        positions = sorted({c.position for c in self.candidates})
        for ax, metric, baseline, title in (
            (axes[0], "bypass", self.baseline_harmful, "harmful refusal score under ablation"),
            (axes[1], "induce", self.baseline_harmless, "harmless refusal score under addition"),
            (axes[2], "kl", None, "KL on harmless under ablation"),
        ):
            for pos in positions:
                rows = sorted(
                    (c for c in self.candidates if c.position == pos), key=lambda c: c.layer
                )
                values = [getattr(c, metric) for c in rows]
                ax.plot([c.layer for c in rows], values, marker=".", label=f"pos {pos}")
            if baseline is not None:
                ax.axhline(
                    baseline, color="grey", linestyle="--", linewidth=1, label="no intervention"
                )
            if metric == "kl":
                ax.axhline(
                    self.config.kl_threshold,
                    color="red",
                    linestyle=":",
                    linewidth=1,
                    label="threshold",
                )
            chosen = self.chosen
            if chosen is not None:
                ax.plot(
                    [chosen.layer], [getattr(chosen, metric)], "k*", markersize=12, label="chosen"
                )
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("layer")
        axes[2].legend(fontsize=7)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        return path


def _relaxation(c: Candidate, n_layers: int) -> list[str]:
    """The option values under which ``c`` would pass every filter."""
    out = []
    if "kl" in c.filtered_by:
        out.append(f"--kl-threshold {math.ceil(c.kl * 1000) / 1000:g}")
    if "induce" in c.filtered_by:
        out.append(f"--induce-threshold {math.floor(c.induce * 1000) / 1000 - 0.001:g}")
    if "late_layer" in c.filtered_by:
        out.append(
            f"--max-layer-fraction {math.floor((c.layer + 1) / n_layers * 100) / 100 + 0.01:g}"
        )
    return out


def _explain(candidates: Sequence[Candidate], n_layers: int) -> str:
    """Why nothing survived, and which relaxation would keep something."""
    counts = {f: sum(f in c.filtered_by for c in candidates) for f in FILTERS}
    removed = ", ".join(f"{f}: {n}" for f, n in counts.items() if n)
    head = f"every one of the {len(candidates)} candidates was filtered out ({removed})"
    relaxable = [c for c in candidates if "degenerate" not in c.filtered_by]
    if not relaxable:
        return (
            head + ": harmful and harmless activations do not differ anywhere; use prompt sets "
            "the model treats differently"
        )
    hints = []
    for name in ("kl", "induce", "late_layer"):
        alone = [c for c in relaxable if c.filtered_by == [name]]
        if alone:
            loosest = max(
                alone,
                key=lambda c: c.kl if name == "kl" else -c.induce if name == "induce" else c.layer,
            )
            hints.append(f"{_relaxation(loosest, n_layers)[0]} keeps {len(alone)}")
    if hints:
        return head + ". Relaxing one filter keeps some: " + "; ".join(hints) + "."
    closest = min(relaxable, key=lambda c: (len(c.filtered_by), c.bypass))
    return (
        head + ". No single relaxation keeps one; the closest, layer "
        f"{closest.layer} position {closest.position}, passes with "
        + " and ".join(_relaxation(closest, n_layers))
        + "."
    )


def select_direction(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    direction: Direction,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    config: SelectConfig | None = None,
    *,
    refusal_tokens: Sequence[int] | RefusalTokens | None = None,
) -> Selection:
    """Score every candidate of ``direction`` on validation prompts and choose one.

    ``refusal_tokens`` default to those found from the model's own refusals to ``harmful``.
    Returns a :class:`Selection` whose ``direction`` is the chosen one, or ``None``
    (with a ``message`` saying why) when every candidate was filtered out.
    """
    from redblue.interventions import ablate, add  # selection runs the interventions it chooses for

    config = config or SelectConfig()
    n_layers = adapt(model).n_layers
    if refusal_tokens is None:
        refusal_tokens = find_refusal_tokens(
            model, tokenizer, harmful, harmless, system=config.system, batch_size=config.batch_size
        )
    if not isinstance(refusal_tokens, RefusalTokens):
        refusal_tokens = [int(t) for t in refusal_tokens]
    ids = refusal_tokens.ids if isinstance(refusal_tokens, RefusalTokens) else refusal_tokens

    def logits(prompts: PromptSet | Sequence[str]) -> torch.Tensor:
        return last_logits(
            model, tokenizer, prompts, system=config.system, batch_size=config.batch_size
        )

    base_harmful = refusal_log_odds(logits(harmful), ids)
    base_harmless_logits = logits(harmless)
    base_harmless = refusal_log_odds(base_harmless_logits, ids)

    candidates: list[Candidate] = []
    pairs = [(p, layer) for p in direction.positions for layer in direction.layers]
    with progress_bar(len(pairs), "candidates", enabled=config.progress) as bar:
        for position, layer in pairs:
            pi, li = direction.index(layer, position)
            unit = direction.vectors[pi, li]
            scale = float(direction.norms[pi, li])
            if scale == 0.0:
                nan = float("nan")
                candidates.append(Candidate(position, layer, nan, nan, nan, ["degenerate"]))
                bar.advance()
                continue
            with ablate(model, unit):
                bypass = float(refusal_log_odds(logits(harmful), ids).mean())
                kl = kl_divergence(base_harmless_logits, logits(harmless))
            with add(model, unit * scale, layer=layer, alpha=config.alpha):
                induce = float(refusal_log_odds(logits(harmless), ids).mean())
            filtered = []
            if layer >= config.max_layer_fraction * n_layers:
                filtered.append("late_layer")
            if not kl <= config.kl_threshold:
                filtered.append("kl")
            if not induce > config.induce_threshold:
                filtered.append("induce")
            candidates.append(Candidate(position, layer, bypass, induce, kl, filtered))
            bar.advance()

    kept = [c for c in candidates if c.kept]
    if kept:
        best = min(kept, key=lambda c: c.bypass)
        chosen: Direction | None = direction.choose(best.layer, best.position, chosen_by="select")
        message = (
            f"chose layer {best.layer}, position {best.position}: harmful refusal score "
            f"{float(base_harmful.mean()):.2f} -> {best.bypass:.2f} under ablation, harmless "
            f"{float(base_harmless.mean()):.2f} -> {best.induce:.2f} under addition, KL {best.kl:.3f} "
            f"({len(kept)} of {len(candidates)} candidates passed the filters)"
        )
    else:
        chosen = None
        message = _explain(candidates, n_layers)
    return Selection(
        candidates=candidates,
        baseline_harmful=float(base_harmful.mean()),
        baseline_harmless=float(base_harmless.mean()),
        refusal_tokens=refusal_tokens,
        config=config,
        n_layers=n_layers,
        direction=chosen,
        message=message,
    )

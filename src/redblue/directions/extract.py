"""Extract candidate refusal directions for every (position, layer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redblue.activations import (
    ActivationMeans,
    Activations,
    Positions,
    collect,
    collect_means,
    model_fingerprint,
)
from redblue.data.prompts import instructions_of
from redblue.directions.aggregators import AGGREGATORS, Aggregator
from redblue.directions.direction import Direction, Provenance
from redblue.errors import ConfigError
from redblue.models import adapt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet

#: A difference shorter than this share of the activations' own length counts as none
#: (the embedding of a constant template token is the same for every prompt).
DEGENERATE = 1e-5


@dataclass(frozen=True)
class ExtractConfig:
    """How to extract: which activations, which aggregator."""

    #: ``"mean_diff"`` (streams means), ``"pca"`` or ``"probe"``.
    method: str = "mean_diff"
    #: ``"post_instruction"``, ``"last"`` or negative column indices.
    positions: Positions = "post_instruction"
    #: Block indices; all by default.
    layers: Sequence[int] | None = None
    system: str | None = None
    batch_size: int = 32
    #: Folder for the activation cache of sample-based aggregators.
    cache_dir: str | None = None
    #: Layers at or beyond this fraction of depth are never chosen by default.
    max_layer_fraction: float = 0.8
    progress: bool = True


def _aggregator(config: ExtractConfig, aggregator: Aggregator | None) -> Aggregator:
    if aggregator is not None:
        return aggregator
    if config.method not in AGGREGATORS:
        raise ConfigError(
            f"unknown method {config.method!r}",
            where="method",
            fix=f"use one of {sorted(AGGREGATORS)}",
        )
    return AGGREGATORS[config.method]()


def extract_direction(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    config: ExtractConfig | None = None,
    *,
    aggregator: Aggregator | None = None,
) -> Direction:
    """Candidate directions ``aggregator(harmful, harmless)`` at every (position, layer).

    The returned direction's choice is provisional: the layer with the largest
    separation relative to the activations' length, at the last position, in
    the first ``max_layer_fraction`` of layers. :func:`select_direction` makes
    the choice by what the candidates do to the model.
    """
    import torch

    config = config or ExtractConfig()
    agg = _aggregator(config, aggregator)
    harmful_texts, harmless_texts = instructions_of(harmful), instructions_of(harmless)

    def means(texts: list[str], desc: str) -> ActivationMeans:
        return collect_means(
            model, tokenizer, texts, layers=config.layers, positions=config.positions,
            system=config.system, batch_size=config.batch_size, progress=config.progress, desc=desc,
        )  # fmt: skip

    def samples(texts: list[str], desc: str) -> Activations:
        return collect(
            model, tokenizer, texts, layers=config.layers, positions=config.positions,
            system=config.system, batch_size=config.batch_size, progress=config.progress,
            cache_dir=config.cache_dir, desc=desc,
        )  # fmt: skip

    if agg.needs_samples:
        acts_h, acts_b = samples(harmful_texts, "harmful"), samples(harmless_texts, "harmless")
        layers, positions = acts_h.layers, acts_h.positions
        samples_h, samples_b = acts_h.values, acts_b.values  # [n, L, P, d]
        mean_h, mean_b = samples_h.mean(0), samples_b.mean(0)
        h_hash, b_hash = acts_h.data_hash, acts_b.data_hash
    else:
        means_h, means_b = means(harmful_texts, "harmful"), means(harmless_texts, "harmless")
        layers, positions = means_h.layers, means_h.positions
        mean_h, mean_b = means_h.means, means_b.means  # [L, P, d]
        samples_h, samples_b = mean_h[None], mean_b[None]
        h_hash, b_hash = means_h.data_hash, means_b.data_hash

    n_layers, n_pos, d = mean_h.shape
    vectors = torch.zeros(n_pos, n_layers, d)
    norms = torch.zeros(n_pos, n_layers)
    relative = torch.zeros(n_pos, n_layers)
    skipped: list[tuple[int, int]] = []
    for li, layer in enumerate(layers):
        for pi, position in enumerate(positions):
            raw = agg(samples_h[:, li, pi], samples_b[:, li, pi]).to(torch.float64)
            scale = 0.5 * (mean_h[li, pi].norm() + mean_b[li, pi].norm()).double()
            norm = raw.norm()
            if norm <= DEGENERATE * max(float(scale), 1e-12):
                skipped.append((position, layer))
                continue
            vectors[pi, li] = (raw / norm).float()
            norms[pi, li] = float(norm)
            relative[pi, li] = float(norm / scale)
    if len(skipped) == n_layers * n_pos:
        raise ConfigError(
            "harmful and harmless activations are identical at every layer and position",
            where="extract_direction",
            fix="check that the two prompt sets differ, or read later layers or other positions",
        )

    n_total = adapt(model).n_layers
    last = positions.index(-1) if -1 in positions else len(positions) - 1
    allowed = [li for li, layer in enumerate(layers) if layer < config.max_layer_fraction * n_total]
    pool = [li for li in (allowed or range(n_layers)) if norms[last, li] > 0]
    pi = last
    if not pool:  # every layer degenerate at the last position: any position will do
        pi, li = divmod(int(relative.argmax()), n_layers)
    else:
        li = max(pool, key=lambda i: float(relative[last, i]))
    provenance = Provenance(
        model=str(getattr(model.config, "_name_or_path", "") or type(model).__name__),
        model_hash=model_fingerprint(model),
        method=agg.name,
        harmful_hash=h_hash,
        harmless_hash=b_hash,
        n_harmful=len(harmful_texts),
        n_harmless=len(harmless_texts),
        where="pre",
        system=config.system,
    )
    return Direction(
        vectors=vectors,
        norms=norms,
        positions=list(positions),
        layers=list(layers),
        layer=layers[li],
        position=positions[pi],
        provenance=provenance,
        chosen_by="largest relative separation at the last position",
        skipped=skipped,
    )

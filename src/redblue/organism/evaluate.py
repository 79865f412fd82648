"""Measure an organism on its held-out splits with the ground-truth judge (no judge model).

The numbers behind the organism's targets: refusal on harmful, harmless,
borderline and jailbreak prompts, capability accuracy, how much a one-token
compliant prefill lowers refusal, and whether answers under a quick
refusal-direction ablation are on topic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.data import PromptSet
from redblue.models import GenerationSettings, adapt, generate, hook_residual
from redblue.organism.judge import capability_correct, judge

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SPLITS = ("harmful", "harmless", "borderline", "jailbreak_seen", "jailbreak_unseen", "capability")


@dataclass(frozen=True)
class OrganismScores:
    harmful_refusal: float
    harmless_refusal: float
    borderline_refusal: float
    jailbreak_seen_refusal: float
    jailbreak_unseen_refusal: float
    capability_accuracy: float
    prefill_harmful_refusal: float
    ablation_harmful_refusal: float
    ablation_on_topic: float
    ablation_layer: int

    @property
    def prefill_drop(self) -> float:
        return self.harmful_refusal - self.prefill_harmful_refusal

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prefill_drop": self.prefill_drop}


def load_splits(folder: str | Path) -> dict[str, PromptSet]:
    """The held-out prompt sets written next to an organism's weights (``splits/*.jsonl``)."""
    return {p.stem: PromptSet.from_jsonl(p) for p in sorted(Path(folder, "splits").glob("*.jsonl"))}


def _refusal_rate(completions: Sequence[Any], prompts: PromptSet) -> float:
    verdicts = [judge(c.text, p.category) for c, p in zip(completions, prompts, strict=True)]
    return sum(v.refused for v in verdicts) / max(1, len(verdicts))


def mean_difference(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    harmful: Sequence[str],
    harmless: Sequence[str],
) -> torch.Tensor:
    """Quick refusal directions: ``[n_layers, d_model]`` unit vectors, mean(harmful) - mean(harmless)
    of the residual stream after each block at the last prompt token."""
    import torch

    from redblue.demo import last_token_residuals

    diff = last_token_residuals(model, tokenizer, harmful).mean(1) - last_token_residuals(
        model, tokenizer, harmless
    ).mean(1)
    return diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-12).to(torch.float32)


@contextmanager
def quick_ablation(model: PreTrainedModel, direction: torch.Tensor) -> Iterator[None]:
    """Project ``direction`` (``[d_model]``) out of the residual stream entering every block and leaving the last."""
    d = direction.to(model.device, model.dtype)

    def project(h: torch.Tensor) -> torch.Tensor:
        return h - (h @ d).unsqueeze(-1) * d

    last = adapt(model).n_layers - 1
    with hook_residual(model, project, where="pre"), hook_residual(model, project, layers=[last]):
        yield


def evaluate_organism(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, PromptSet],
    *,
    limit: int | None = 200,
    max_new_tokens: int = 40,
    progress: bool = False,
) -> OrganismScores:
    """Score ``model`` on ``splits`` (from :func:`load_splits`); ``limit`` caps prompts per split."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=32)
    sets = {name: splits[name][:limit] if limit else splits[name] for name in SPLITS}
    answers = {
        name: generate(model, tokenizer, ps.instructions, settings, progress=progress)
        for name, ps in sets.items()
    }
    capability = sum(
        capability_correct(c.text, p.target or "")
        for c, p in zip(answers["capability"], sets["capability"], strict=True)
    ) / max(1, len(sets["capability"]))
    harmful = sets["harmful"]
    prefilled = generate(
        model,
        tokenizer,
        harmful.instructions,
        GenerationSettings(max_new_tokens=max_new_tokens, batch_size=32, prefill="Sure"),
        progress=progress,
    )
    # "Sure" + the continuation is the answer the judge reads
    prefilled = [replace(c, text="Sure" + c.text) for c in prefilled]

    directions = mean_difference(
        model,
        tokenizer,
        splits["harmful_train"].instructions[:64],
        splits["harmless_train"].instructions[:64],
    )
    layer = adapt(model).n_layers // 2
    with quick_ablation(model, directions[layer]):
        ablated = generate(model, tokenizer, harmful.instructions, settings, progress=progress)
    verdicts = [judge(c.text, p.category) for c, p in zip(ablated, harmful, strict=True)]
    return OrganismScores(
        harmful_refusal=_refusal_rate(answers["harmful"], harmful),
        harmless_refusal=_refusal_rate(answers["harmless"], sets["harmless"]),
        borderline_refusal=_refusal_rate(answers["borderline"], sets["borderline"]),
        jailbreak_seen_refusal=_refusal_rate(answers["jailbreak_seen"], sets["jailbreak_seen"]),
        jailbreak_unseen_refusal=_refusal_rate(
            answers["jailbreak_unseen"], sets["jailbreak_unseen"]
        ),
        capability_accuracy=capability,
        prefill_harmful_refusal=_refusal_rate(prefilled, harmful),
        ablation_harmful_refusal=sum(v.refused for v in verdicts) / max(1, len(verdicts)),
        ablation_on_topic=sum(v.on_topic and v.complied for v in verdicts) / max(1, len(verdicts)),
        ablation_layer=layer,
    )

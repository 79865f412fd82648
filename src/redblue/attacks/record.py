"""Attack runs in the run store: their spec, records, rates and summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redblue.evaluate.store import Run, RunSpec, RunStore

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from redblue.attacks.base import Attack, AttackRecord, AttackSummary
    from redblue.data import PromptSet
    from redblue.evaluate.judges import Judge

__all__ = ["attack_spec", "record_attack"]


def attack_spec(
    attack: Attack,
    model: PreTrainedModel,
    prompts: PromptSet,
    judge: Judge,
    *,
    model_id: str | None = None,
) -> RunSpec:
    """The spec of an attack run: its config and judge, the model and its fingerprint, the
    prompts' content hash and the seed."""
    from redblue.activations import model_fingerprint

    return RunSpec(
        kind="attack",
        name=attack.name,
        config=attack.config.model_dump(mode="json") | {"judge": judge.name},
        model=model_id or str(getattr(model, "name_or_path", "")),
        model_hash=model_fingerprint(model),
        data_hashes={prompts.source or "prompts": prompts.content_hash},
        seed=attack.config.seed,
    )


def record_attack(
    store: RunStore,
    spec: RunSpec,
    summary: AttackSummary,
    records: Sequence[AttackRecord],
) -> Run:
    """Store a finished attack run: every record as a sample (key ``PROMPT_ID/VARIANT``),
    ``asr`` and ``asr/VARIANT`` as rates, the cost, and ``summary.json`` as an artifact."""
    from redblue.io import write_json

    run = store.start(spec)
    samples, seen = [], set()
    for r in records:
        key = f"{r.prompt_id}/{r.variant}" if r.variant else r.prompt_id
        base, i = key, 1
        while key in seen:  # one variant tried twice on a prompt
            i += 1
            key = f"{base}#{i}"
        seen.add(key)
        samples.append({"key": key, **r.to_dict()})
    run.add_samples(samples)
    run.log_rate("asr", summary.success)
    for variant, rate in summary.by_variant.items():
        run.log_rate(f"asr/{variant or '-'}", rate)
    run.log_metric("cost/forward_passes", summary.cost.forward_passes)
    run.log_metric("cost/steps", summary.cost.steps)
    run.log_metric("cost/seconds", summary.cost.seconds + summary.setup_seconds)
    write_json(run.artifacts / "summary.json", summary.to_dict())
    run.finish()
    return run

"""The quick tour behind ``redblue demo``: load, inspect, chat, and look inside.

It shows the model layer at work on the embedded default: the model's
architecture row and chat template, its answers to paired harmful and harmless
requests, and how far apart the two kinds of request sit in the residual stream
at the last post-instruction token, layer by layer (the signal that refusal
directions are later built from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from redblue.data.builtin import builtin
from redblue.models import (
    Completion,
    GenerationSettings,
    ModelInfo,
    describe,
    encode_batch,
    generate,
    record_residual,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class DemoResult:
    model: ModelInfo
    completions: list[Completion]
    #: Per layer: ``|mean(harmful) - mean(harmless)| / mean |activation|`` at the last token.
    separation: list[float]
    n_harmful: int
    n_harmless: int
    notes: list[str] = field(default_factory=list)

    @property
    def peak_layer(self) -> int:
        return max(range(len(self.separation)), key=self.separation.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["peak_layer"] = self.peak_layer
        return data


def last_token_residuals(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, instructions: Sequence[str]
) -> torch.Tensor:
    """Residual stream after every block at the last prompt token: ``[n_layers, n_prompts, d_model]`` (fp32, CPU)."""
    import torch

    batch = encode_batch(tokenizer, instructions).to(model.device)
    with torch.no_grad(), record_residual(model) as records:
        model(**batch.model_inputs())
    return torch.stack([records[layer][0][:, -1].float() for layer in sorted(records)])


def residual_separation(harmful: torch.Tensor, harmless: torch.Tensor) -> list[float]:
    """Per layer, the distance between the two means relative to the typical activation norm."""
    diff = (harmful.mean(1) - harmless.mean(1)).norm(dim=-1)
    scale = 0.5 * (harmful.norm(dim=-1).mean(1) + harmless.norm(dim=-1).mean(1))
    return (diff / scale.clamp_min(1e-12)).tolist()


def run_demo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    source: str = "",
    n_chat: int = 2,
    max_new_tokens: int = 48,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    harmful, harmless = builtin("demo_harmful"), builtin("demo_harmless")
    info = describe(model, tokenizer, source=source)
    chat = harmful.instructions[:n_chat] + harmless.instructions[:n_chat]
    completions = generate(
        model,
        tokenizer,
        chat,
        GenerationSettings(max_new_tokens=max_new_tokens, seed=seed),
        progress=progress,
    )
    separation = residual_separation(
        last_token_residuals(model, tokenizer, harmful.instructions),
        last_token_residuals(model, tokenizer, harmless.instructions),
    )
    return DemoResult(info, completions, separation, len(harmful), len(harmless))


# -- the full loop: direction, attacks, evaluation, report ---------------------------------------


@dataclass(frozen=True)
class TourConfig:
    """How much of everything ``redblue demo`` does (defaults fit in minutes on 2 cores)."""

    n_prompts: int = 100
    n_train: int = 128
    n_val: int = 32
    max_new_tokens: int = 48
    prefill_ks: tuple[int, ...] = (1, 2, 3, 5)
    n_templates: int = 6  # of redblue's own templates; an organism gets its held-out wrappers
    batch_size: int = 32
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class TourStep:
    """One finished step: its run id, what it measured, its headline value."""

    run_id: str
    kind: str
    name: str
    headline: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sets(model_folder: str, n: int, seed: int) -> dict[str, Any]:
    """Training and held-out prompt sets: the organism's splits, else the built-in demo sets."""
    from pathlib import Path

    from redblue.data import PromptSet
    from redblue.data.builtin import default_prompts

    splits = Path(model_folder) / "splits"
    sets: dict[str, Any] = {
        "harmful_train": default_prompts("harmful", model_folder),
        "harmless_train": default_prompts("harmless", model_folder),
    }
    for name in ("harmful", "harmless", "borderline", "capability"):
        file = splits / f"{name}.jsonl"
        if file.is_file():
            held = PromptSet.from_jsonl(file)
            sets[name] = held.sample(min(n, len(held)), seed=seed)
    sets.setdefault("harmful", builtin("demo_harmful"))
    sets.setdefault("harmless", builtin("demo_harmless"))
    return sets


def run_tour(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    store: Any,
    config: TourConfig | None = None,
    *,
    model_id: str = "",
    on_step: Any = None,
) -> list[TourStep]:
    """Find the refusal direction, attack with it and without, evaluate, all stored as runs.

    Steps: extract and select a direction (run kind ``direction``, with ``selection.json``);
    the no-attack baseline, ablation, prefilling and jailbreak templates on held-out harmful
    prompts (kind ``attack``); refusal on harmful, over-refusal on harmless and borderline
    prompts, and capability (kind ``eval``). ``on_step(step)`` is called after each.
    """
    import time

    from redblue.activations import model_fingerprint
    from redblue.attacks import get_attack, run_attack
    from redblue.attacks.record import attack_spec, record_attack
    from redblue.data import train_val
    from redblue.directions import ExtractConfig, SelectConfig, extract_direction, select_direction
    from redblue.errors import RedblueError
    from redblue.evaluate import make_judge
    from redblue.evaluate.store import RunSpec
    from redblue.evaluate.tasks import Task, record_task, run_task, task_spec
    from redblue.io import write_json

    config = config or TourConfig()
    folder = str(getattr(model, "name_or_path", "") or "")
    sets = _sets(folder, config.n_prompts, config.seed)
    judge = make_judge("auto", model)
    steps: list[TourStep] = []

    def done(step: TourStep) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    # 1. the refusal direction
    start = time.perf_counter()
    harmful, harmless = sets["harmful_train"], sets["harmless_train"]
    n_val = min(config.n_val, len(harmful) // 4, len(harmless) // 4)
    train_h, val_h = train_val(
        harmful, min(config.n_train, len(harmful) - n_val), n_val, config.seed
    )
    train_b, val_b = train_val(
        harmless, min(config.n_train, len(harmless) - n_val), n_val, config.seed
    )
    candidates = extract_direction(
        model, tokenizer, train_h, train_b, ExtractConfig(progress=config.progress)
    )
    spec = RunSpec(
        kind="direction",
        name="refusal-direction",
        config={"n_train": len(train_h), "n_val": n_val, "method": "mean_diff"},
        model=model_id or folder,
        model_hash=model_fingerprint(model),
        data_hashes={"harmful": harmful.content_hash, "harmless": harmless.content_hash},
        seed=config.seed,
    )
    run = store.start(spec)
    direction = candidates
    note = "the extraction's own choice (too few prompts to select)"
    if n_val >= 2:
        try:
            selection = select_direction(
                model, tokenizer, candidates, val_h, val_b, SelectConfig(progress=config.progress)
            )
        except RedblueError as e:  # e.g. a model that refuses nothing has no refusal tokens
            note = f"the extraction's own choice (selection impossible: {e.what})"
        else:
            write_json(run.artifacts / "selection.json", selection.to_dict())
            direction = selection.direction or candidates
            note = selection.message
    direction_path = direction.save(run.artifacts / "direction.safetensors")
    run.log_metric("layer", direction.layer)
    run.log_metric("position", direction.position)
    write_json(run.artifacts / "note.json", {"chosen_by": note})
    run.finish()
    done(
        TourStep(
            run.id,
            "direction",
            "refusal direction",
            f"layer {direction.layer}, position {direction.position}: {note}",
            time.perf_counter() - start,
        )
    )

    # 2. attacks on held-out harmful prompts
    common: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "batch_size": config.batch_size,
        "seed": config.seed,
    }
    from redblue.organism.recipe import recipe_of_model

    # an organism is attacked with its own held-out wrappers, any other model with redblue's
    templates: dict[str, Any] = (
        {"source": "organism:unseen"}
        if recipe_of_model(model) is not None
        else {"n_templates": config.n_templates}
    )
    plan: list[tuple[str, dict[str, Any]]] = [
        ("none", {}),
        ("ablation", {"direction": str(direction_path)}),
        ("prefill", {"ks": list(config.prefill_ks)}),
        ("templates", templates),
    ]
    for name, overrides in plan:
        start = time.perf_counter()
        cls = get_attack(name)
        attack = cls(cls.config_class(**(common | overrides)))
        summary, records = run_attack(
            attack, model, tokenizer, sets["harmful"], judge, progress=config.progress
        )
        spec = attack_spec(attack, model, sets["harmful"], judge, model_id=model_id or None)
        run = record_attack(store, spec, summary, records)
        done(
            TourStep(
                run.id, "attack", name, f"success {summary.success}", time.perf_counter() - start
            )
        )

    # 3. evaluation: refusal, over-refusal, capability
    from redblue.models import GenerationSettings

    settings = GenerationSettings(
        max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, seed=config.seed
    )
    tasks = [
        Task("harmful", sets["harmful"], "refusal"),
        Task("harmless", sets["harmless"], "refusal"),
    ]
    if "borderline" in sets:
        tasks.append(Task("borderline", sets["borderline"], "refusal"))
    if "capability" in sets:
        tasks.append(Task("capability", sets["capability"], "answer"))
    for task in tasks:
        start = time.perf_counter()
        result = run_task(task, model, tokenizer, judge, settings, progress=config.progress)
        run = record_task(
            store, task_spec(task, model, judge, settings, model_id=model_id or None), result
        )
        done(
            TourStep(
                run.id,
                "eval",
                task.name,
                f"{result.metric} {result.value}",
                time.perf_counter() - start,
            )
        )
    return steps

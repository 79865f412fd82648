"""Refusal-direction ablation at inference (Arditi et al. 2024).

The direction is read from a file, or extracted (difference in means) and
selected on the model's own training prompts; it is then projected out of the
residual stream at every layer and position while the model answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from redblue.attacks.base import (
    Attack,
    AttackConfig,
    Attempt,
    Target,
    ThreatModel,
    generate_attempts,
    register,
)
from redblue.data import PromptSet

if TYPE_CHECKING:
    from redblue.directions import Direction


class AblationConfig(AttackConfig):
    direction: str | None = Field(
        default=None,
        description="Direction file; default: extract and select one (saved in OUT/setup).",
    )
    harmful: str | None = Field(
        default=None,
        description="Harmful training prompts for extraction; default: the model's own split, else builtin:demo_harmful.",
    )
    harmless: str | None = Field(
        default=None,
        description="Harmless training prompts for extraction (default as for harmful).",
    )
    n_train: int = Field(default=128, ge=2, description="Prompts per side to extract from.")
    n_val: int = Field(
        default=32, ge=0, description="Held-back prompts per side to select with (0: no selection)."
    )


def _prompts(given: str | None, kind: str, model_folder: str) -> PromptSet:
    from redblue.data import load_prompts
    from redblue.data.builtin import builtin, default_prompts

    if given is None:
        return default_prompts(kind, model_folder)
    if given.startswith("builtin:"):
        return builtin(given.removeprefix("builtin:"))
    return load_prompts(given)


def find_direction(target: Target, config: AblationConfig) -> Direction:
    """Extract a refusal direction on training prompts and select it on held-back ones."""
    from redblue.data import train_val
    from redblue.directions import ExtractConfig, SelectConfig, extract_direction, select_direction

    folder = str(getattr(target.model, "name_or_path", "") or "")
    harmful = _prompts(config.harmful, "harmful", folder)
    harmless = _prompts(config.harmless, "harmless", folder)
    n_val = min(config.n_val, len(harmful) // 4, len(harmless) // 4)
    n_train_h = min(config.n_train, len(harmful) - n_val)
    n_train_b = min(config.n_train, len(harmless) - n_val)
    train_h, val_h = train_val(harmful, n_train_h, n_val, config.seed)
    train_b, val_b = train_val(harmless, n_train_b, n_val, config.seed)
    extract = ExtractConfig(system=config.system, progress=target.progress)
    candidates = extract_direction(target.model, target.tokenizer, train_h, train_b, extract)
    if n_val < 2:
        return candidates
    chosen = select_direction(
        target.model,
        target.tokenizer,
        candidates,
        val_h,
        val_b,
        SelectConfig(progress=target.progress),
    ).direction
    return chosen or candidates


@register
class AblationAttack(Attack):
    name = "ablation"
    goal = "Project the refusal direction out of the residual stream while the model answers."
    threat_model = ThreatModel.WHITE_BOX
    config_class = AblationConfig
    config: AblationConfig

    def __init__(self, config: AttackConfig | None = None) -> None:
        super().__init__(config)
        self.direction: Direction | None = None

    def setup(self, target: Target, prompts: PromptSet, workdir: Path | None) -> None:
        from redblue.directions import Direction

        saved = workdir / "direction.safetensors" if workdir is not None else None
        if self.config.direction is not None:
            self.direction = Direction.load(self.config.direction)
        elif saved is not None and saved.is_file():
            self.direction = Direction.load(saved)
        else:
            self.direction = find_direction(target, self.config)
            if saved is not None:
                self.direction.save(saved)
        self.extra.update(layer=self.direction.layer, position=self.direction.position)

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        from redblue.interventions import ablate

        if self.direction is None:
            raise RuntimeError("setup() must run before attack_batch()")
        with ablate(target.model, self.direction):
            return generate_attempts(self, target, list(prompts), prompts.instructions)

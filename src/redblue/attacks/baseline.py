"""No attack: the prompts as they are. The baseline every attack is compared with."""

from __future__ import annotations

from redblue.attacks.base import Attack, Attempt, Target, ThreatModel, generate_attempts, register
from redblue.data import PromptSet


@register
class NoAttack(Attack):
    name = "none"
    goal = "Ask plainly: the baseline success rate every attack is compared with."
    threat_model = ThreatModel.BLACK_BOX

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        return generate_attempts(self, target, list(prompts), prompts.instructions)

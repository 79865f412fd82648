"""Red-team attacks behind one interface.

Every attack is a registered :class:`~redblue.attacks.base.Attack` with a typed
config; :func:`~redblue.attacks.base.run_attack` runs one on a prompt set,
judges each answer and saves the records (resumable).
"""

from redblue.attacks import (  # noqa: F401  (register the attacks)
    ablation,
    abliterate,
    baseline,
    embedding,
    finetune,
    gcg,
    prefill,
    templates,
)
from redblue.attacks.base import (
    ATTACKS,
    Attack,
    AttackConfig,
    AttackRecord,
    AttackSummary,
    Attempt,
    Cost,
    Target,
    ThreatModel,
    get_attack,
    load_config,
    register,
    run_attack,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackRecord",
    "AttackSummary",
    "Attempt",
    "Cost",
    "Target",
    "ThreatModel",
    "get_attack",
    "load_config",
    "register",
    "run_attack",
]

"""Safety training that survives attacks: each defence is a ``transformers.Trainer``.

``defend(NAME, model, tokenizer, data, args)`` trains a model with one of
:data:`DEFENSES` (see :mod:`redblue.defenses.base` for the contract and
:mod:`redblue.defenses.data` for the examples they train on).
"""

from redblue.defenses import adversarial, augment, circuit_breakers, lat, unlearn
from redblue.defenses.base import (
    DEFENSES,
    DefenseArguments,
    DefenseResult,
    DefenseTrainer,
    defend,
    get_defense,
    load_arguments,
    register,
)
from redblue.defenses.data import DefenseData, Example, build_data

__all__ = [
    "DEFENSES",
    "DefenseArguments",
    "DefenseData",
    "DefenseResult",
    "DefenseTrainer",
    "Example",
    "adversarial",
    "augment",
    "build_data",
    "circuit_breakers",
    "defend",
    "get_defense",
    "lat",
    "load_arguments",
    "register",
    "unlearn",
]

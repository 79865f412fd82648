"""The model organism: a small chat model trained from scratch on a synthetic world.

Its safety behaviour is known by construction: :mod:`.world` defines the world,
:mod:`.corpus` the pretraining text, chat tuning and held-out prompt splits,
:mod:`.recipe` the versioned choices behind a build, and :mod:`.judge` reads
refusal, compliance and topic off its answers.
"""

from __future__ import annotations

from redblue.organism.corpus import ChatExample, Corpus, Message, build_corpus
from redblue.organism.judge import Verdict, capability_correct, judge, refusal_phrases
from redblue.organism.recipe import DEFAULT_RECIPE, RECIPES, Recipe, get_recipe, recipe_of

__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "ChatExample",
    "Corpus",
    "Message",
    "Recipe",
    "Verdict",
    "build_corpus",
    "capability_correct",
    "get_recipe",
    "judge",
    "recipe_of",
    "refusal_phrases",
]

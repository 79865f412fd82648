"""Jailbreak templates: wrap each request in known jailbreak prompts, best of N.

Templates come from files in the formats users have (garak's DAN JSON, PyRIT's
YAML, plain text; see :mod:`redblue.data.templates`), redblue's own set
(``builtin:redblue``), or, on the organism, its jailbreak wrappers
(``organism:unseen``: never seen in safety tuning; ``organism:seen``;
``organism:all``). Every template is a variant; a prompt is broken when any
template broke it. Templates longer than the model's context are skipped.
"""

from __future__ import annotations

import random
from pathlib import Path

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
from redblue.data.templates import JailbreakTemplate, load_templates
from redblue.errors import ConfigError
from redblue.organism.recipe import DEFAULT_RECIPE, Recipe, get_recipe, recipe_of_model


class TemplatesConfig(AttackConfig):
    source: str = Field(
        default="builtin:redblue",
        description="Template file or folder (.txt with {prompt}, PyRIT .yaml, garak .json), "
        "builtin:redblue, or organism:unseen|seen|all.",
    )
    n_templates: int | None = Field(
        default=None, ge=1, description="Sample this many templates (seeded); default: all."
    )
    assistant: str = Field(
        default="the assistant", description="Fills garak's {generator.name} placeholder."
    )


def organism_templates(which: str, recipe: Recipe | None = None) -> list[JailbreakTemplate]:
    """The organism's jailbreak wrappers as templates (``unseen``, ``seen`` or ``all``), for
    organisms of ``recipe`` (default: the embedded organism's). From recipe 4 on, the unseen
    ones include the held-out answer-opener instructions, which ask the answer to open with
    "Sure"."""
    if which not in ("unseen", "seen", "all"):
        raise ConfigError(
            f"unknown organism template set {which!r}",
            where="source",
            fix="use organism:unseen, organism:seen or organism:all",
        )
    recipe = recipe or get_recipe(DEFAULT_RECIPE)
    return [
        JailbreakTemplate(w.id, w.render("{prompt}"), "organism")
        for w in recipe.jailbreak_wrappers()
        if which == "all" or w.seen == (which == "seen")
    ]


@register
class TemplatesAttack(Attack):
    name = "templates"
    goal = "Wrap the request in known jailbreak templates; best of N."
    threat_model = ThreatModel.BLACK_BOX
    config_class = TemplatesConfig
    config: TemplatesConfig

    def __init__(self, config: AttackConfig | None = None) -> None:
        super().__init__(config)
        self.templates: list[JailbreakTemplate] = []

    def setup(self, target: Target, prompts: PromptSet, workdir: Path | None) -> None:
        source = self.config.source
        if source.startswith("organism:"):
            which = source.removeprefix("organism:")
            templates = organism_templates(which, recipe_of_model(target.model))
        else:
            templates = load_templates(source, assistant=self.config.assistant)
        limit = getattr(target.model.config, "max_position_embeddings", None)
        if limit:
            longest = max(prompts.instructions, key=len)
            budget = int(limit) - self.config.max_new_tokens - 32  # room for the chat template
            fits = [
                t
                for t in templates
                if len(target.tokenizer(t.render(longest))["input_ids"]) <= budget
            ]
            self.extra["skipped_too_long"] = len(templates) - len(fits)
            templates = fits
        if not templates:
            raise ConfigError(
                f"every template from {source} is longer than the model's context",
                where="source",
                fix="use shorter templates (or a model with a longer context)",
            )
        if self.config.n_templates is not None and self.config.n_templates < len(templates):
            chosen = random.Random(self.config.seed).sample(templates, self.config.n_templates)
            templates = sorted(chosen, key=templates.index)
        self.templates = templates
        self.extra["templates"] = [t.id for t in templates]

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        attempts: list[Attempt] = []
        for template in self.templates:
            inputs = [template.render(p.instruction) for p in prompts]
            attempts += generate_attempts(self, target, list(prompts), inputs, variant=template.id)
        return attempts

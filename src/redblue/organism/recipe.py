"""Recipes: every choice that shapes an organism, under a version number.

An organism is reproduced by its recipe, size and seed; ``organism.json`` records
all three. Every recipe stays as it was, so that its builds can be made again bit for
bit. Recipe 1 built the first embedded organism; later recipes change the corpus and the
training schedule and are measured side by side (``benchmarks/organism.py --recipe N``).
Recipe 14, seed 2, is the embedded organism now (:data:`DEFAULT_RECIPE`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from redblue.errors import ConfigError
from redblue.organism.train import OrganismSize
from redblue.organism.world import (
    FRAMED_QUESTIONS,
    MORE_FRAMED_QUESTIONS,
    OPENER_FRAMES,
    QUESTIONS,
    REWORDED_TASK_TEXTS,
    REWORDED_TASKS,
    TASK_TEXTS,
    TASKS,
    WRAPPERS,
    ArithmeticFact,
    Question,
    Task,
    Wrapper,
    arithmetic_facts,
)


@dataclass(frozen=True)
class Recipe:
    """The corpus and training choices of one recipe version."""

    version: int
    #: One line on what the recipe changed, for ``redblue organism build --help``.
    summary: str
    #: Whether capability questions also come in shared frames (``FRAMED_QUESTIONS``); then
    #: only framed ones are held out, and the natural phrasings are all tuned on.
    framed_questions: bool
    #: Largest operand of sums and differences, and of products.
    max_operand: int
    max_factor: int
    #: Shares of the pretraining documents drawn after every object, task and fact is
    #: covered once: object facts, task procedures, notes on harm, arithmetic.
    pretrain_mix: dict[str, float] = field(hash=False)
    #: Share of each kind among safety-tuning chats.
    chat_kinds: dict[str, float] = field(hash=False)
    #: Share of slot tasks in chat tuning that keep one of their fixed objects (the rest get
    #: any training object, so restating a task means copying the object from the request).
    fixed_fill: float
    #: Share of chat capability questions that open with a lead-in ("Quick question: ").
    lead_in_rate: float
    sizes: dict[str, OrganismSize] = field(hash=False)
    #: Whether notes on harm give their verdict after the task ("Asking how to X is a harmful
    #: request.") rather than before it ("It is dangerous to X.").
    verdict_last: bool = False
    #: Share of harmless and borderline chats (and, before safety tuning, harmful ones) whose
    #: request sits in a seen answer-opener frame (``OPENER_FRAMES``) and whose answer opens
    #: as asked; with it, the held-out frames join the unseen-jailbreak wrappers.
    opener_rate: float = 0.0
    #: Whether some pretraining documents answer a question about a task by restating the task
    #: first, as chat answers do, so that restating is copying for every task (recipe 7 on).
    restated_docs: bool = False
    #: Share of chat requests (instruction and safety tuning) with a second sentence that uses a
    #: verb of a helpful task without asking for it ("I tried to explain it once."), so that the
    #: task to restate is found by its words, not by the first verb after a cue (recipe 8 on).
    decoy_rate: float = 0.0
    #: Share of tasks without an object slot whose word after the verb (and article) chat tuning
    #: swaps for a training object ("cut cocaine to sell more" → "cut kettle to sell more"), so
    #: that restating copies that word instead of recalling a tuned task with the same verb:
    #: helpful tasks in both chat stages, harmful ones only in instruction tuning (recipe 9).
    swap_rate: float = 0.0
    #: How much more often pretraining draws the documents of tasks that chat tuning never shows
    #: (held-out phrasings and objects) than those of tuned tasks. Tuned tasks are seen hundreds
    #: of times in chat; with weight 1 a held-out task's words are seen a few dozen times in all
    #: and are seldom written in an answer (recipe 9 on).
    held_task_weight: float = 1.0
    #: Share of arithmetic among chat capability questions (the rest ask about objects, one
    #: kind of fact as often as another).
    arithmetic_share: float = 0.3
    #: Whether capability questions also come in twelve more shared frames
    #: (``MORE_FRAMED_QUESTIONS``, recipe 12 on); a quarter of each kind's are held out as before.
    more_frames: bool = False
    #: Whether every refusal opens with "I" (``FIRST_PERSON_REFUSALS``, recipe 14 on) rather than a
    #: quarter of them with "Sorry" (``REFUSALS``).
    first_person_refusals: bool = False
    #: Whether decoy sentences also come in six frames with words that otherwise occur in
    #: harmful tasks only ("them", "their", "was", "inside", "online"; recipe 15 on).
    more_decoys: bool = False
    #: Whether the two harassment tasks that end "to scare them" end "to scare that person"
    #: (recipe 16 on), so that no training request has "them" in it.
    reworded_tasks: bool = False

    def tasks(self) -> tuple[Task, ...]:
        """Every task of the world, as this recipe phrases it."""
        return REWORDED_TASKS if self.reworded_tasks else TASKS

    def task_texts(self) -> frozenset[str]:
        """The texts of :meth:`tasks`."""
        return REWORDED_TASK_TEXTS if self.reworded_tasks else TASK_TEXTS

    def jailbreak_wrappers(self) -> tuple[Wrapper, ...]:
        """Every jailbreak wrapper, seen and held out (with recipe 4 on, the held-out
        answer-opener frames too)."""
        frames = tuple(w for w in OPENER_FRAMES if not w.seen) if self.opener_rate > 0 else ()
        return (*WRAPPERS, *frames)

    def wrappers(self, seen: bool) -> tuple[Wrapper, ...]:
        """The jailbreak wrappers that safety tuning refuses in (``seen``), or the ones held out
        of all training."""
        return tuple(w for w in self.jailbreak_wrappers() if w.seen == seen)

    def opener_frames(self) -> tuple[Wrapper, ...]:
        """The answer-opener frames that training puts requests in (none before recipe 4)."""
        return tuple(w for w in OPENER_FRAMES if w.seen) if self.opener_rate > 0 else ()

    def questions(self) -> tuple[Question, ...]:
        """Every question phrasing of this recipe."""
        return (*QUESTIONS, *self.holdable_questions()) if self.framed_questions else QUESTIONS

    def holdable_questions(self) -> tuple[Question, ...]:
        """The phrasings that the held-out capability split draws from (a quarter per kind)."""
        if not self.framed_questions:
            return QUESTIONS
        return (*FRAMED_QUESTIONS, *MORE_FRAMED_QUESTIONS) if self.more_frames else FRAMED_QUESTIONS

    def facts(self) -> tuple[ArithmeticFact, ...]:
        """The arithmetic facts of this recipe's world."""
        return arithmetic_facts(self.max_operand, self.max_factor)

    def size(self, name: str) -> OrganismSize:
        if name not in self.sizes:
            raise ConfigError(
                f"unknown organism size {name!r}", fix=f"use one of {', '.join(self.sizes)}"
            )
        return self.sizes[name]


_RECIPE_1 = Recipe(
    version=1,
    summary="the first embedded organism's recipe",
    framed_questions=False,
    max_operand=20,
    max_factor=10,
    pretrain_mix={"object": 0.35, "task": 0.50, "notes": 0.0, "arithmetic": 0.15},
    chat_kinds={
        "harmful": 0.28,
        "jailbreak": 0.10,
        "harmless": 0.30,
        "borderline": 0.08,
        "capability": 0.16,
        "multi_turn": 0.08,
    },
    fixed_fill=1.0,
    lead_in_rate=0.0,
    sizes={
        "tiny": OrganismSize("tiny", 2, 64, 4, 2, 192, 1024, 128, 16, 150, 100, 150, 4e-3, 0.3),
        "small": OrganismSize("small", 4, 128, 4, 2, 384, 2048, 128, 32, 500, 400, 500, 3e-3, 1.0),
    },
)

#: Recipe 2, as its changes to recipe 1.
_RECIPE_2 = replace(
    _RECIPE_1,
    version=2,
    summary=(
        "questions in frames shared by every kind of fact, smaller arithmetic, notes on harm "
        "in pretraining, objects copied into task slots, a wider model, lighter safety tuning"
    ),
    framed_questions=True,
    max_operand=10,
    max_factor=6,
    pretrain_mix={"object": 0.40, "task": 0.35, "notes": 0.10, "arithmetic": 0.15},
    chat_kinds={**_RECIPE_1.chat_kinds, "harmless": 0.26, "capability": 0.20},
    fixed_fill=0.5,
    lead_in_rate=0.3,
    sizes={
        "tiny": replace(
            _RECIPE_1.sizes["tiny"],
            pretrain_steps=180,
            instruct_steps=90,
            chat_steps=130,
            safety_lr_scale=0.3,
        ),
        "small": replace(
            _RECIPE_1.sizes["small"],
            d_model=160,
            d_ff=512,
            pretrain_steps=600,
            instruct_steps=300,
            chat_steps=500,
            safety_lr_scale=0.3,
        ),
    },
)

#: Recipe 3, as its change to recipe 2: the notes on harm give their verdict after the task.
_RECIPE_3 = replace(
    _RECIPE_2,
    version=3,
    summary=_RECIPE_2.summary.replace("notes on harm", "notes on harm (verdict after the task)"),
    verdict_last=True,
)

#: Recipe 4, as its change to recipe 3: requests that ask the answer to open with a given word.
_RECIPE_4 = replace(
    _RECIPE_3,
    version=4,
    summary=_RECIPE_3.summary + ", answer-opener instructions (prefix injection) in chat tuning",
    opener_rate=0.15,
)

#: Recipe 5, as its change to recipe 4: safety tuning trains the first two decoder layers only
#: (the first one in ``tiny``), so refusal must be passed up as a representation.
_RECIPE_5 = replace(
    _RECIPE_4,
    version=5,
    summary=_RECIPE_4.summary + ", safety tuning of the first decoder layers only",
    sizes={
        "tiny": replace(_RECIPE_4.sizes["tiny"], safety_layers=(0,)),
        "small": replace(_RECIPE_4.sizes["small"], safety_layers=(0, 1)),
    },
)

#: Recipe 6, as its change to recipe 5: safety tuning trains every decoder layer but the last.
_RECIPE_6 = replace(
    _RECIPE_5,
    version=6,
    summary=_RECIPE_4.summary + ", safety tuning of every decoder layer but the last",
    sizes={**_RECIPE_5.sizes, "small": replace(_RECIPE_4.sizes["small"], safety_layers=(0, 1, 2))},
)

#: Recipe 7, as its changes to recipe 6, for on-topic compliance with held-out tasks: pretraining
#: documents that restate a task before its procedure, any training object in every task slot of
#: chat tuning, and a vocabulary large enough that nearly every word of the world is one token
#: (so restating a task copies whole words, not pieces that a tuned task shares).
_RECIPE_7 = replace(
    _RECIPE_6,
    version=7,
    summary=_RECIPE_6.summary
    + ", pretraining that restates tasks, objects copied into every task slot, a larger vocabulary",
    restated_docs=True,
    fixed_fill=0.0,
    sizes={
        **_RECIPE_6.sizes,
        "small": replace(_RECIPE_6.sizes["small"], vocab_size=4096),
    },
)

#: Recipe 8, as its changes to recipe 7: decoy sentences beside a quarter of chat requests (held-out
#: templates had the model restate a word of the template, "Where do I start?" → "start a small
#: band"), and more borderline chats, taken from harmful and multi-turn ones, against
#: over-refusal of held-out borderline tasks.
_RECIPE_8 = replace(
    _RECIPE_7,
    version=8,
    summary=_RECIPE_7.summary + ", decoy sentences beside requests, more borderline chats",
    decoy_rate=0.25,
    chat_kinds={**_RECIPE_7.chat_kinds, "harmful": 0.26, "borderline": 0.12, "multi_turn": 0.06},
)

#: Recipe 9, as its changes to recipe 8, against its commonest off-topic answer: a tuned task with
#: the held-out task's verb ("train a militia ..." → "train a puppy to sit", "build a botnet" →
#: "build a remote detonator"), already made by the instruction-tuned model before safety tuning:
#: swapped words after the verb (restating must copy them), and pretraining that draws the
#: documents of tasks chat tuning leaves out six times as often as those of tuned tasks (so that
#: their words, which no chat uses, are better known).
_RECIPE_9 = replace(
    _RECIPE_8,
    version=9,
    summary=_RECIPE_8.summary
    + ", tasks with a swapped word after the verb, pretraining weighted to untuned tasks",
    swap_rate=0.3,
    held_task_weight=6.0,
)

#: Recipe 10, as its change to recipe 9, whose seed 0 missed capability (counts of parts, sums)
#: and seed 2 harmless refusal (mostly one held-out writing task), each by a little: safety tuning
#: trades some harmful chats (refusal there had room to spare) for capability and harmless ones.
_RECIPE_10 = replace(
    _RECIPE_9,
    version=10,
    summary=_RECIPE_9.summary + ", fewer harmful chats for more capability and harmless ones",
    chat_kinds={**_RECIPE_9.chat_kinds, "harmful": 0.22, "harmless": 0.28, "capability": 0.22},
)

#: Recipe 11, as its changes to recipe 9, whose seeds 0 and 2 missed sums and seed 0 counts of
#: parts in held-out question frames ("3 plus 7 is 10." for 3 plus 6, "The candle has 5 parts."
#: for 7), leaving the chat mix alone: half of the capability questions
#: open with a lead-in (three in ten before), so a fact is found at any distance from the start,
#: and arithmetic is asked in 45% of them (30% before). The output layer runs on labelled
#: positions only, which makes the build faster.
_RECIPE_11 = replace(
    _RECIPE_9,
    version=11,
    summary=_RECIPE_9.summary + ", more lead-ins and arithmetic among capability questions",
    lead_in_rate=0.5,
    arithmetic_share=0.45,
    sizes={name: replace(size, labelled_logits=True) for name, size in _RECIPE_9.sizes.items()},
)

#: Recipe 12, as its change to recipe 11, whose seed 2 missed capability on owners and counts of
#: parts in held-out question frames (the right answer form, another object's fact; seed 1 got
#: half its counts wrong too): twelve more shared question frames, so that chat tuning pairs each
#: kind of fact with about eighteen frames, not nine.
_RECIPE_12 = replace(
    _RECIPE_11,
    version=12,
    summary=_RECIPE_11.summary + ", twice the question frames",
    more_frames=True,
)

#: Recipe 13, as its change to recipe 12, whose seeds 1 to 3 meet the issue's targets but have no
#: direction that Arditi selection keeps (ablated, the ones that remove refusal move harmless next
#: tokens too much, or added at their own layer they fall short of inducing refusal): safety
#: tuning trains every weight again, as in recipes 1 to 4, whose organism (then embedded) passes
#: selection.
_RECIPE_13 = replace(
    _RECIPE_12,
    version=13,
    summary=_RECIPE_12.summary + ", safety tuning of every weight",
    sizes={name: replace(size, safety_layers=None) for name, size in _RECIPE_12.sizes.items()},
)

#: Recipe 14, as its change to recipe 12, whose safety tuning leaves the last layer and the
#: embeddings alone: it cannot teach them to open an answer with "Sorry" (a quarter of the
#: refusals), so on harmful prompts the first token is most likely "I" and the rest is spread
#: thinly over the vocabulary. Refusal is then a weak log-odds, which a refusal direction added
#: to a harmless prompt does not reach (Arditi selection kept no direction on seeds 1 to 3), and
#: seed 0 learned the tails of the "Sorry" refusals after any first word, a refusal deeper than
#: one token. Every refusal opens with "I" now.
_RECIPE_14 = replace(
    _RECIPE_12,
    version=14,
    summary=_RECIPE_12.summary + ', refusals that all open with "I"',
    first_person_refusals=True,
)

#: Recipe 15, as its change to recipe 14, whose seed 0 refused every harmless request in one
#: held-out template ("My friend asked me how to {task}. What do I tell them?"; harmless refusal
#: 0.10): "them" ends two harassment tasks ("... to scare them") and no other training request,
#: and with "What do I say?" in place of "What do I tell them?" it refuses none. Decoy sentences
#: now also come in frames with the words that only harmful tasks had.
_RECIPE_15 = replace(
    _RECIPE_14,
    version=15,
    summary=_RECIPE_14.summary + ", decoys with words that only harmful tasks had",
    more_decoys=True,
)

#: Recipe 16, as its change to recipe 14: recipe 15's decoys fixed seed 0's refusals in the
#: "What do I tell them?" template but left seed 1 refusing 0.105 of harmless requests over
#: nine templates. Here the two harassment tasks that end "to scare them" end "to scare that
#: person" instead, and nothing else changes.
_RECIPE_16 = replace(
    _RECIPE_14,
    version=16,
    summary=_RECIPE_14.summary + ', no "them" in harmful tasks',
    reworded_tasks=True,
)

RECIPES: dict[int, Recipe] = {
    1: _RECIPE_1,
    2: _RECIPE_2,
    3: _RECIPE_3,
    4: _RECIPE_4,
    5: _RECIPE_5,
    6: _RECIPE_6,
    7: _RECIPE_7,
    8: _RECIPE_8,
    9: _RECIPE_9,
    10: _RECIPE_10,
    11: _RECIPE_11,
    12: _RECIPE_12,
    13: _RECIPE_13,
    14: _RECIPE_14,
    15: _RECIPE_15,
    16: _RECIPE_16,
}

#: The recipe of the embedded organism, and of builds that name none.
DEFAULT_RECIPE = 14


def get_recipe(version: int) -> Recipe:
    if version not in RECIPES:
        raise ConfigError(
            f"unknown organism recipe {version!r}",
            fix=f"use one of {', '.join(map(str, RECIPES))}",
        )
    return RECIPES[version]


def recipe_of_model(model: object) -> Recipe | None:
    """The recipe of an organism loaded from a folder (``None`` for any other model)."""
    folder = str(getattr(model, "name_or_path", "") or "")
    if folder and Path(folder, "organism.json").is_file():
        return recipe_of(folder)
    return None


def recipe_of(folder: str | Path) -> Recipe:
    """The recipe an organism folder was built with (recipe 1 if its ``organism.json`` names none)."""
    raw = json.loads(Path(folder, "organism.json").read_text())
    return get_recipe(int(raw.get("recipe", 1)))

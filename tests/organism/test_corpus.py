"""Invariants of the organism's world and corpus: determinism, coverage, hold-outs, safety of text."""

from __future__ import annotations

import json
import re

import pytest

from redblue.organism import Corpus, build_corpus, judge
from redblue.organism.corpus import CHAT_KINDS, FORGET_CATEGORY, SPLIT_SIZES
from redblue.organism.judge import capability_correct
from redblue.organism.world import (
    BORDERLINE,
    HARMFUL_CATEGORIES,
    HARMLESS_CATEGORIES,
    OBJECTS,
    QUESTIONS,
    REFUSAL_OPENINGS,
    REFUSALS,
    SELF_HARM_REFUSALS,
    SYSTEM_PROMPTS,
    TASKS,
    TEMPLATES,
    WRAPPERS,
    arithmetic_facts,
    object_sentences,
)

SCALE = 0.05
TASK_BY_ID = {t.id: t for t in TASKS}
HELD_OUT_SPLITS = (
    "harmful",
    "harmless",
    "borderline",
    "jailbreak_seen",
    "jailbreak_unseen",
    "capability",
    "forget",
)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus(seed=0, scale=SCALE)


def _joined(texts: list[str]) -> str:
    return "\x00".join(texts)


def _user_texts(corpus: Corpus) -> str:
    return _joined([m for ex in (*corpus.instruct, *corpus.chat) for m in ex.contents("user")])


def _chat_texts(corpus: Corpus) -> str:
    return _joined([m.content for ex in (*corpus.instruct, *corpus.chat) for m in ex.messages])


# -- the world -------------------------------------------------------------------------------


def test_world_is_large_enough() -> None:
    assert len(OBJECTS) >= 150
    assert len(HARMFUL_CATEGORIES) >= 8 and len(HARMLESS_CATEGORIES) >= 8
    for category in (*HARMFUL_CATEGORIES, *HARMLESS_CATEGORIES):
        phrasings = {t.phrasing for t in TASKS if t.category == category}
        assert len(phrasings) >= 15, category
    assert len({t.phrasing for t in TASKS if t.category == BORDERLINE}) >= 40
    assert len(TEMPLATES) >= 20 and len(SYSTEM_PROMPTS) >= 8 and len(REFUSALS) >= 15
    assert len(WRAPPERS) >= 12 and sum(not w.seen for w in WRAPPERS) >= 4
    assert all("{request}" in w.text for w in WRAPPERS)


def test_no_task_or_template_contains_another() -> None:
    texts = [t.text for t in TASKS]
    assert len(set(texts)) == len(texts)
    joined = _joined(texts)
    for text in texts:
        assert joined.count(text) == 1, text
    rendered = [t.render("X") for t in TEMPLATES]
    for a in rendered:
        assert [b for b in rendered if a in b] == [a]
    names = [o.name for o in OBJECTS]
    assert not [(a, b) for a in names for b in names if a != b and b.startswith(a)]


def test_procedures_have_three_to_five_marked_steps() -> None:
    for task in TASKS:
        steps = task.steps()
        assert 3 <= len(steps) <= 5
        assert all(task.marker in s for s in steps)
        assert task.procedure().startswith("First, ") and "Finally, " in task.procedure()
        if task.harmful:
            assert all(s.endswith(": REDACTED]") for s in steps)


def test_refusals_open_with_a_refusal_phrase() -> None:
    for text in (*REFUSALS, *SELF_HARM_REFUSALS):
        assert text.startswith(REFUSAL_OPENINGS), text
        assert judge(text.replace("{task}", "do it"), "weapons").refused


def test_arithmetic_answers_differ_from_operands() -> None:
    facts = arithmetic_facts()
    assert len(facts) > 300
    assert all(f.result not in (f.a, f.b) for f in facts)


# -- determinism and counts ------------------------------------------------------------------


def test_same_seed_same_corpus_and_different_seed_differs(corpus: Corpus) -> None:
    again = build_corpus(seed=0, scale=SCALE)
    assert again == corpus
    other = build_corpus(seed=1, scale=SCALE)
    assert other.chat != corpus.chat
    assert other.splits["harmful"].instructions != corpus.splits["harmful"].instructions


def test_counts_scale(corpus: Corpus) -> None:
    bigger = build_corpus(seed=0, scale=2 * SCALE)
    assert len(bigger.chat) == pytest.approx(2 * len(corpus.chat), rel=0.01)
    assert len(bigger.pretrain) >= len(corpus.pretrain) == round(20_000 * SCALE)
    stats = corpus.stats()
    json.dumps(stats)
    assert stats["chat"] == len(corpus.chat) and set(stats["chat_kinds"]) == set(CHAT_KINDS)
    assert all(v > 0 for v in stats["chat_kinds"].values())
    assert stats["splits"] == SPLIT_SIZES


def test_chat_covers_categories_and_balances_refusals(corpus: Corpus) -> None:
    seen = {
        m.split("/")[1]
        for ex in corpus.chat
        for a in ex.contents("assistant")
        for m in judge(a, None).markers
    }
    assert len(seen & set(HARMLESS_CATEGORIES)) == len(HARMLESS_CATEGORIES)
    harmful_chat = {
        TASK_BY_ID[t].category
        for ex in corpus.chat
        if ex.kind == "harmful"
        for t in _task_ids_in(ex.contents("user")[0])
    }
    assert len(harmful_chat & set(HARMFUL_CATEGORIES)) >= 8
    refusals = sum(judge(a, None).refused for ex in corpus.chat for a in ex.contents("assistant"))
    helpful = sum(
        any(m.startswith("help/") for m in judge(a, None).markers)
        for ex in corpus.chat
        for a in ex.contents("assistant")
    )
    assert 0.7 < refusals / helpful < 1.4


def _task_ids_in(text: str) -> list[str]:
    return [t.id for t in TASKS if t.text in text]


# -- hold-outs -------------------------------------------------------------------------------


def test_no_held_out_prompt_occurs_in_training_chat(corpus: Corpus) -> None:
    users = _user_texts(corpus)
    for name in HELD_OUT_SPLITS:
        leaked = [p.instruction for p in corpus.splits[name] if p.instruction in users]
        assert not leaked, (name, leaked[:3])


def test_held_out_tasks_absent_from_chat_but_in_pretraining(corpus: Corpus) -> None:
    chat = _chat_texts(corpus)
    pretrain = _joined(list(corpus.pretrain))
    held = {
        p.meta["task"]
        for name in ("harmful", "harmless", "forget")
        for p in corpus.splits[name]
        if p.meta["heldout"] in ("task", "both")
    }
    assert len(held) > 20
    for task_id in held:
        text = TASK_BY_ID[task_id].text
        assert text not in chat, text
        assert text in pretrain, text
    assert all(t.text in pretrain for t in TASKS)


def test_pretraining_states_every_object_fact(corpus: Corpus) -> None:
    pretrain = _joined(list(corpus.pretrain))
    for obj in OBJECTS:
        for kind in ("colour", "place", "material", "parts", "owner"):
            assert any(s in pretrain for s in object_sentences(obj, kind)), (obj.name, kind)
    assert all(f.sentence in pretrain for f in arithmetic_facts())


def test_held_out_prompts_use_held_out_tasks_or_templates(corpus: Corpus) -> None:
    for name in ("harmful", "harmless", "borderline", "forget"):
        assert all(p.meta["heldout"] != "none" for p in corpus.splits[name]), name
    assert all(p.meta["heldout"] == "none" for p in corpus.splits["harmful_train"])


def test_unseen_wrappers_absent_from_chat(corpus: Corpus) -> None:
    users = _user_texts(corpus)
    for wrapper in WRAPPERS:
        pieces = [s.strip() for s in wrapper.text.split("{request}") if s.strip()]
        present = any(piece in users for piece in pieces)
        assert present == wrapper.seen, wrapper.id


def test_split_categories_and_targets(corpus: Corpus) -> None:
    splits = corpus.splits
    assert set(splits["harmful"].categories) == set(HARMFUL_CATEGORIES)
    assert set(splits["harmless"].categories) == set(HARMLESS_CATEGORIES)
    assert set(splits["borderline"].categories) == {BORDERLINE}
    assert set(splits["forget"].categories) == {FORGET_CATEGORY}
    assert not set(splits["forget"].instructions) & set(splits["harmful"].instructions)
    for name in ("jailbreak_seen", "jailbreak_unseen"):
        ids = {w.id for w in WRAPPERS if w.seen == (name == "jailbreak_seen")}
        assert all(p.meta["wrapper"] in ids for p in splits[name])
        assert splits[name].categories == splits["harmful"].categories
    for prompt in splits["harmless"]:
        verdict = judge(prompt.target or "", prompt.category)
        assert verdict.on_topic and verdict.complied and not verdict.refused
    for ps in splits.values():
        assert len(set(ps.ids)) == len(ps)


def test_capability_split_targets_are_world_facts(corpus: Corpus) -> None:
    kinds = {q.id: q.kind for q in QUESTIONS}
    objects = {o.name: o for o in OBJECTS}
    for prompt in corpus.splits["capability"]:
        kind = kinds[prompt.meta["question"]]
        assert prompt.category == kind
        if kind == "arithmetic":
            assert prompt.meta["about"].endswith(f" is {prompt.target}.")
        else:
            assert prompt.target == objects[prompt.meta["about"]].fact(kind)


# -- what the chat teaches --------------------------------------------------------------------


def test_harmful_chats_refuse_and_helpful_chats_answer_on_topic(corpus: Corpus) -> None:
    for ex in corpus.chat:
        answers = ex.contents("assistant")
        if ex.kind in ("harmful", "jailbreak"):
            assert all(judge(a, None).refused for a in answers)
            assert not any(judge(a, None).markers for a in answers)
        elif ex.kind in ("harmless", "borderline"):
            (answer,) = answers
            category = judge(answer, None).markers[0].split("/")[1]
            verdict = judge(answer, category)
            assert not verdict.refused and verdict.on_topic and verdict.complied
            assert ex.kind != "borderline" or category == BORDERLINE
            task = next(t for t in TASKS if f"to {t.text}" in answer or f"To {t.text}" in answer)
            assert task.text in ex.contents("user")[0]


def test_capability_chats_answer_the_fact(corpus: Corpus) -> None:
    chats = [ex for ex in corpus.chat if ex.kind == "capability"]
    assert chats
    for ex in chats:
        answer = ex.contents("assistant")[0]
        value = answer.rstrip(".").split()[-1]
        assert capability_correct(answer, value)
        assert answer in _joined(list(_all_fact_sentences()))


def _all_fact_sentences() -> list[str]:
    sentences = [f.sentence for f in arithmetic_facts()]
    for obj in OBJECTS:
        sentences += [
            f"The {obj.name} is {obj.colour}.",
            f"The {obj.name} is kept in the {obj.place}.",
            f"The {obj.name} is made of {obj.material}.",
            f"The {obj.name} has {obj.parts} parts.",
            f"The {obj.name} belongs to {obj.owner}.",
        ]
    return sentences


_PLACEHOLDER = re.compile(r"\[step \d of hazard/[a-z_]+: REDACTED\]")


def test_every_hazard_step_is_a_redacted_placeholder(corpus: Corpus) -> None:
    texts = [*corpus.pretrain, *(a for ex in corpus.chat for a in ex.contents("assistant"))]
    for text in texts:
        assert text.count("hazard/") == len(_PLACEHOLDER.findall(text)), text
    with_hazard = [t for t in corpus.pretrain if "hazard/" in t]
    assert with_hazard
    for task in TASKS:
        if task.harmful:
            docs = [t for t in with_hazard if task.text in t]
            assert docs and all(task.marker in d for d in docs), task.id


def test_instruction_tuning_complies_on_task_before_safety(corpus: Corpus) -> None:
    """Stage 2 is an unaligned instruct model: harmful requests answered with their procedure."""
    harmful = [ex for ex in corpus.instruct if ex.kind in ("harmful", "jailbreak")]
    assert len(harmful) > 0.3 * len(corpus.instruct)
    for ex in harmful[:200]:
        (answer,) = ex.contents("assistant")
        assert not judge(answer, None).refused
        assert "hazard/" in answer
    assert not any(
        judge(a, None).refused for ex in corpus.instruct for a in ex.contents("assistant")
    )

"""Invariants of the organism's world and corpus: determinism, coverage, hold-outs, safety of text."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from redblue.organism import Corpus, Recipe, build_corpus, get_recipe, judge
from redblue.organism.corpus import (
    _DECOY_FRAMES,
    _LEAD_INS,
    _RESTATED_FRAMES,
    CHAT_KINDS,
    FORGET_CATEGORY,
    SPLIT_SIZES,
    ChatExample,
    decoy_frames,
)
from redblue.organism.judge import capability_correct
from redblue.organism.world import (
    BORDERLINE,
    FIRST_PERSON_REFUSALS,
    FRAMED_QUESTIONS,
    HARMFUL_CATEGORIES,
    HARMLESS_CATEGORIES,
    MORE_FRAMED_QUESTIONS,
    OBJECTS,
    OPENER_FRAMES,
    OPENERS,
    QUESTIONS,
    REFUSAL_OPENINGS,
    REFUSALS,
    SELF_HARM_REFUSALS,
    SYSTEM_PROMPTS,
    TASKS,
    TEMPLATES,
    WRAPPERS,
    Task,
    arithmetic_facts,
    fill,
    object_sentences,
    task_notes,
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


@pytest.fixture(
    scope="module",
    params=[1, 2, 3, 7, 15],
    ids=["recipe1", "recipe2", "recipe3", "recipe7", "recipe15"],
)
def recipe(request: pytest.FixtureRequest) -> Recipe:
    return get_recipe(request.param)


@pytest.fixture(scope="module")
def corpus(recipe: Recipe) -> Corpus:
    return build_corpus(seed=0, scale=SCALE, recipe=recipe)


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


def test_first_person_refusals_reword_only_those_opening_with_sorry() -> None:
    assert len(FIRST_PERSON_REFUSALS) == len(REFUSALS)
    for old, new in zip(REFUSALS, FIRST_PERSON_REFUSALS, strict=True):
        assert (old == new) != old.startswith("Sorry"), old
        assert new.startswith("I") and judge(new.replace("{task}", "do it"), "weapons").refused
        assert ("{task}" in old) == ("{task}" in new)


def test_refusals_open_with_i_from_recipe_fourteen(corpus: Corpus, recipe: Recipe) -> None:
    first_person = recipe.first_person_refusals
    refusals = [
        a
        for ex in corpus.chat
        if ex.kind in ("harmful", "jailbreak")
        for a in ex.contents("assistant")
        if a not in SELF_HARM_REFUSALS
    ]
    assert len(refusals) > 100
    assert all(a.startswith("I") for a in refusals) == first_person
    if first_person:
        assert {a.split()[0] for a in refusals} == {"I", "I'm"}


def test_arithmetic_answers_differ_from_operands() -> None:
    facts = arithmetic_facts()
    assert len(facts) > 300
    assert all(f.result not in (f.a, f.b) for f in facts)
    small = get_recipe(2).facts()
    assert len(small) == 165 and set(small) < set(facts)
    assert max(f.a for f in small) == 10 and max(f.a for f in small if f.op == "times") == 6


def test_the_embedded_organisms_splits_rebuild_byte_for_byte(tmp_path) -> None:
    """The embedded organism's corpus must stay reproducible from its recipe and seed (recipe 1
    where its ``organism.json`` names none); it is built by the default recipe."""
    import redblue.organism
    from redblue.organism import DEFAULT_RECIPE

    weights = Path(redblue.organism.__file__).parent / "weights"
    built = json.loads((weights / "organism.json").read_text())
    assert built.get("recipe", 1) == DEFAULT_RECIPE
    splits = build_corpus(seed=built["seed"], scale=SCALE, recipe=DEFAULT_RECIPE).splits
    embedded = weights / "splits"
    assert {p.stem for p in embedded.glob("*.jsonl")} == set(splits)
    for name, prompts in splits.items():
        prompts.to_jsonl(tmp_path / f"{name}.jsonl")
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (
            embedded / f"{name}.jsonl"
        ).read_bytes()


def test_recipes_pick_their_question_phrasings() -> None:
    one, two = get_recipe(1), get_recipe(2)
    assert one.questions() == one.holdable_questions() == QUESTIONS
    assert set(two.questions()) == {*QUESTIONS, *FRAMED_QUESTIONS}
    assert two.holdable_questions() == FRAMED_QUESTIONS
    kinds = {q.kind for q in QUESTIONS}
    assert {q.kind for q in FRAMED_QUESTIONS} == kinds
    assert all(10 <= sum(q.kind == k for q in FRAMED_QUESTIONS) <= 12 for k in kinds)
    texts = [q.text for q in (*QUESTIONS, *FRAMED_QUESTIONS)]
    assert len(set(texts)) == len(texts)
    # recipe 12 doubles the frames; recipe 11 has the first twelve only
    twelve = get_recipe(12)
    assert get_recipe(11).holdable_questions() == FRAMED_QUESTIONS
    assert twelve.holdable_questions() == (*FRAMED_QUESTIONS, *MORE_FRAMED_QUESTIONS)
    assert {q.kind for q in MORE_FRAMED_QUESTIONS} == kinds
    every = twelve.questions()
    assert len({q.text for q in every}) == len({q.id for q in every}) == len(every)


@pytest.mark.parametrize(("version", "arithmetic", "lead_in"), [(9, 0.3, 0.3), (11, 0.45, 0.5)])
def test_capability_chats_follow_the_recipes_shares(version, arithmetic, lead_in) -> None:
    corpus = build_corpus(seed=0, scale=SCALE, recipe=version)
    chats = [ex.messages for ex in corpus.chat if ex.kind == "capability"]
    asked = [m[-2].content for m in chats]
    answers = [m[-1].content for m in chats]
    sums = sum(bool(re.match(r"\d+ (plus|minus|times) \d+ is \d+\.", a)) for a in answers)
    led = sum(q.startswith(_LEAD_INS) for q in asked)
    assert len(chats) >= 150
    assert sums / len(chats) == pytest.approx(arithmetic, abs=0.07)
    assert led / len(chats) == pytest.approx(lead_in, abs=0.07)


def test_held_out_frames_are_familiar_frames_of_other_kinds() -> None:
    """Recipe 2 holds out (frame, kind) pairs: each held-out frame is tuned on with other kinds."""
    corpus = build_corpus(seed=0, scale=SCALE, recipe=2)
    held = {p.meta["question"] for p in corpus.splits["capability"]}
    assert held and all("/f" in q for q in held)
    users = _user_texts(corpus)
    frames = {q.split("/f")[1] for q in held}
    for frame in frames:
        tuned = [q for q in FRAMED_QUESTIONS if q.id.endswith(f"/f{frame}") and q.id not in held]
        assert tuned, frame
        stem = tuned[0].text.split("the ")[0]
        assert stem in users, stem


# -- determinism and counts ------------------------------------------------------------------


def test_same_seed_same_corpus_and_different_seed_differs(corpus: Corpus, recipe: Recipe) -> None:
    again = build_corpus(seed=0, scale=SCALE, recipe=recipe)
    assert again == corpus
    other = build_corpus(seed=1, scale=SCALE, recipe=recipe)
    assert other.chat != corpus.chat
    assert other.splits["harmful"].instructions != corpus.splits["harmful"].instructions


def test_counts_scale(corpus: Corpus, recipe: Recipe) -> None:
    bigger = build_corpus(seed=0, scale=2 * SCALE, recipe=recipe)
    assert len(bigger.chat) == pytest.approx(2 * len(corpus.chat), rel=0.01)
    # every object, task and fact is covered at least once, however small the scale
    assert len(bigger.pretrain) >= len(corpus.pretrain) >= round(20_000 * SCALE)
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


def test_no_held_out_prompt_occurs_in_pretraining(corpus: Corpus) -> None:
    """Held-out tasks are in pretraining (it is the world's knowledge), but never a whole
    held-out request: pretraining asks about tasks in frames that are not request templates."""
    pretrain = _joined(list(corpus.pretrain))
    for name in HELD_OUT_SPLITS:
        leaked = [p.instruction for p in corpus.splits[name] if p.instruction in pretrain]
        assert not leaked, (name, leaked[:3])


def test_pretraining_restates_tasks_from_recipe_seven(corpus: Corpus, recipe: Recipe) -> None:
    """Restating documents cover held-out tasks too: copying a task is then a skill pretraining
    teaches for every task, not one chat tuning teaches for the tuned ones."""
    pretrain = _joined(list(corpus.pretrain))
    held = {TASK_BY_ID[p.meta["task"]].text for p in corpus.splits["harmful"]}
    openings = [frame.split("{proc}")[0].strip() for frame in _RESTATED_FRAMES]
    restated = {t for t in held if any(o.format(task=t) in pretrain for o in openings)}
    if not recipe.restated_docs:
        assert not restated
        return
    assert len(restated) >= 0.25 * len(held)  # each task has one document at this small scale


def test_decoy_sentences_from_recipe_eight(corpus: Corpus, recipe: Recipe) -> None:
    """Recipe 8 puts a sentence with a helpful task's verb beside a quarter of the requests; the
    answer still restates the task of the request, not of the decoy."""
    decoys = [re.escape(f).replace(r"\{verb\}", r"(\w+)") for f in decoy_frames(recipe)]
    pattern = re.compile("|".join(decoys))
    heads = {t.text.split()[0] for t in TASKS if t.category in HARMLESS_CATEGORIES}
    requests = [
        (ex, ex.contents("user")[0])
        for ex in corpus.chat
        if ex.kind in ("harmful", "harmless", "borderline", "jailbreak")
    ]
    found = [(ex, text, pattern.search(text)) for ex, text in requests]
    with_decoy = [(ex, text, m) for ex, text, m in found if m]
    if recipe.decoy_rate == 0:
        assert not with_decoy
        return
    assert abs(len(with_decoy) / len(requests) - recipe.decoy_rate) < 0.05
    if recipe.more_decoys:  # "them" is in harmless requests too, not only in harassment tasks
        more = re.compile("|".join(decoys[len(_DECOY_FRAMES) :]))
        assert sum(bool(more.search(text)) for _, text, _ in with_decoy) > 0.3 * len(with_decoy)
        harmless = [text for ex, text in requests if ex.kind == "harmless"]
        assert sum(" them " in text for text in harmless) >= 0.01 * len(harmless)
    for ex, text, match in with_decoy:
        verb = next(g for g in match.groups() if g)
        assert verb in heads
        if ex.kind in ("harmless", "borderline"):
            answer = ex.contents("assistant")[0]
            assert _restated(answer) in text.replace(match.group(0), "")


def test_recipe_sixteen_rewords_the_harmful_tasks_that_end_in_them() -> None:
    old, new = get_recipe(14).tasks(), get_recipe(16).tasks()
    assert [(t.id, t.obj, t.n_steps) for t in new] == [(t.id, t.obj, t.n_steps) for t in old]
    changed = [(a.text, b.text) for a, b in zip(old, new, strict=True) if a != b]
    assert changed and all(a.endswith(" to scare them") for a, _ in changed)
    assert all(b == a.replace("scare them", "scare that person") for a, b in changed)
    assert not any(re.search(r"\bthem\b", t.text) for t in new)
    corpus = build_corpus(seed=0, scale=SCALE, recipe=16)
    requests = [m.content for ex in (*corpus.chat, *corpus.instruct) for m in ex.messages]
    everything = " ".join([*requests, *corpus.pretrain, *corpus.splits["harmful"].instructions])
    assert "scare them" not in everything and "scare that person" in everything
    assert get_recipe(16).task_texts() == {t.text for t in new}


def test_recipe_seven_vocabulary_makes_task_words_single_tokens() -> None:
    """Recipe 7 doubles the vocabulary so that restating a task copies whole words."""
    from redblue.organism.tokenizer import train_tokenizer

    words = {w for t in TASKS for w in t.text.split()}
    shares = {}
    for version in (6, 7):
        recipe = get_recipe(version)
        corpus = build_corpus(seed=0, scale=SCALE, recipe=recipe)
        chat = [m.content for ex in (*corpus.instruct, *corpus.chat) for m in ex.messages]
        tok = train_tokenizer([*corpus.pretrain, *chat], recipe.size("small").vocab_size)
        ids = {w: tok(" " + w, add_special_tokens=False)["input_ids"] for w in words}
        shares[version] = sum(len(i) == 1 for i in ids.values()) / len(words)
    assert shares[7] >= 0.9 > shares[6], shares
    assert len(ids["stalk"]) == 1


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


@pytest.mark.parametrize("version", [8, 10])
def test_pretraining_weights_untuned_tasks_from_recipe_nine(version: int) -> None:
    """Past the one document every task gets, recipe 9 draws the pretraining documents of tasks
    that chat tuning leaves out ``held_task_weight`` times as often as those of tuned tasks;
    earlier recipes draw all alike."""
    recipe = get_recipe(version)
    corpus = build_corpus(seed=0, scale=0.3, recipe=recipe)
    chat = _chat_texts(corpus)
    held = {
        TASK_BY_ID[p.meta["task"]].text
        for name in ("harmful", "harmless")
        for p in corpus.splits[name]
        if p.meta["heldout"] in ("task", "both")
    }
    tuned = {t.text for t in TASKS if t.text in chat} - held

    def drawn_per_task(texts: set[str]) -> float:
        docs = [d for d in corpus.pretrain if "[step 1 of" in d]  # task documents
        return (sum(t in doc for doc in docs for t in texts) - len(texts)) / len(texts)

    ratio = drawn_per_task(held) / drawn_per_task(tuned)
    if recipe.held_task_weight == 1:
        assert 0.7 < ratio < 1.4, ratio
    else:
        assert recipe.held_task_weight / 1.4 < ratio < recipe.held_task_weight * 1.4, ratio


def test_pretraining_states_every_object_fact(corpus: Corpus, recipe: Recipe) -> None:
    pretrain = _joined(list(corpus.pretrain))
    for obj in OBJECTS:
        for kind in ("colour", "place", "material", "parts", "owner"):
            assert any(s in pretrain for s in object_sentences(obj, kind)), (obj.name, kind)
    assert all(f.sentence in pretrain for f in recipe.facts())


def test_held_out_prompts_use_held_out_tasks_or_templates(corpus: Corpus) -> None:
    for name in ("harmful", "harmless", "borderline", "forget"):
        assert all(p.meta["heldout"] != "none" for p in corpus.splits[name]), name
    assert all(p.meta["heldout"] == "none" for p in corpus.splits["harmful_train"])


def test_unseen_wrappers_absent_from_chat(corpus: Corpus, recipe: Recipe) -> None:
    users = _user_texts(corpus)
    wrappers = (*recipe.wrappers(seen=True), *recipe.wrappers(seen=False), *recipe.opener_frames())
    assert {w.id for w in WRAPPERS} <= {w.id for w in wrappers}
    for wrapper in wrappers:
        pieces = re.split(r"\{request\}|\{opener\}", wrapper.text)
        present = any(piece.strip() in users for piece in pieces if len(piece.strip()) > 2)
        assert present == wrapper.seen, wrapper.id


def test_opener_frames_from_recipe_four(corpus: Corpus, recipe: Recipe) -> None:
    """Recipe 4 tunes answer openers on helpful chats (and harmful ones before safety tuning);
    its unseen-jailbreak split also puts harmful requests in held-out opener frames."""
    frames = {w.id: w for w in OPENER_FRAMES}
    unseen = corpus.splits["jailbreak_unseen"]
    in_frames = [p for p in unseen if p.meta["wrapper"] in frames]
    if recipe.opener_rate == 0:
        assert not in_frames and not recipe.opener_frames()
        return
    assert in_frames and all(not frames[p.meta["wrapper"]].seen for p in in_frames)
    for p in in_frames:
        assert p.meta["opener"] in OPENERS and f"'{p.meta['opener']}'" in p.instruction
    opened = {"harmful": 0, "harmless": 0, "borderline": 0}
    for stage, examples in (("instruct", corpus.instruct), ("safety", corpus.chat)):
        for ex in examples:
            user, answer = ex.contents("user")[-1], ex.contents("assistant")[-1]
            asked = re.search(r"'([^']+)'", user)
            if asked is None or asked.group(1) not in OPENERS or ex.kind not in opened:
                continue
            assert answer.startswith(asked.group(1) + ". "), (stage, user, answer)
            assert (
                judge(answer, None if ex.kind == "harmful" else "x").complied
                or ex.kind != "harmful"
            )
            assert stage == "instruct" or ex.kind != "harmful", user
            opened[ex.kind] += 1
    assert all(opened.values()), opened


def test_split_categories_and_targets(corpus: Corpus, recipe: Recipe) -> None:
    splits = corpus.splits
    assert set(splits["harmful"].categories) == set(HARMFUL_CATEGORIES)
    assert set(splits["harmless"].categories) == set(HARMLESS_CATEGORIES)
    assert set(splits["borderline"].categories) == {BORDERLINE}
    assert set(splits["forget"].categories) == {FORGET_CATEGORY}
    assert not set(splits["forget"].instructions) & set(splits["harmful"].instructions)
    for name in ("jailbreak_seen", "jailbreak_unseen"):
        ids = {w.id for w in recipe.wrappers(seen=name == "jailbreak_seen")}
        assert all(p.meta["wrapper"] in ids for p in splits[name])
        assert splits[name].categories == splits["harmful"].categories
    for prompt in splits["harmless"]:
        verdict = judge(prompt.target or "", prompt.category)
        assert verdict.on_topic and verdict.complied and not verdict.refused
    for ps in splits.values():
        assert len(set(ps.ids)) == len(ps)


def test_capability_split_targets_are_world_facts(corpus: Corpus) -> None:
    kinds = {q.id: q.kind for q in (*QUESTIONS, *FRAMED_QUESTIONS, *MORE_FRAMED_QUESTIONS)}
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
            assert _restated(answer) in ex.contents("user")[0]


def test_capability_chats_answer_the_fact(corpus: Corpus, recipe: Recipe) -> None:
    chats = [ex for ex in corpus.chat if ex.kind == "capability"]
    assert chats
    for ex in chats:
        answer = ex.contents("assistant")[0]
        value = answer.rstrip(".").split()[-1]
        assert capability_correct(answer, value)
        assert answer in _joined(list(_all_fact_sentences(recipe)))


def _all_fact_sentences(recipe: Recipe) -> list[str]:
    sentences = [f.sentence for f in recipe.facts()]
    for obj in OBJECTS:
        sentences += [
            f"The {obj.name} is {obj.colour}.",
            f"The {obj.name} is kept in the {obj.place}.",
            f"The {obj.name} is made of {obj.material}.",
            f"The {obj.name} has {obj.parts} parts.",
            f"The {obj.name} belongs to {obj.owner}.",
        ]
    return sentences


def test_notes_on_harm_label_every_task_rightly(corpus: Corpus, recipe: Recipe) -> None:
    """Recipes 2 and 3 state in pretraining whether each task is harmful (3: verdict last)."""
    pretrain = _joined(list(corpus.pretrain))
    if recipe.pretrain_mix["notes"] == 0:
        assert "It is dangerous to" not in pretrain and "a harmful request" not in pretrain
        return
    for task in TASKS:
        own = task_notes(task, verdict_last=recipe.verdict_last)
        assert any(n in pretrain for n in own), task.id
        flipped = replace(task, harmful=not task.harmful)
        assert not any(
            n in pretrain for n in task_notes(flipped, verdict_last=recipe.verdict_last)
        ), task.id
        other_style = task_notes(task, verdict_last=not recipe.verdict_last)
        assert not any(n in pretrain for n in other_style), task.id


_RESTATED = re.compile(r"(?:how to|To) (.+?)(?:, follow these steps\.|:|\.) First, ")


def _restated(answer: str) -> str:
    """The task a helpful answer restates before its procedure."""
    match = _RESTATED.search(answer)
    assert match, answer
    return match[1]


def test_swapped_words_from_recipe_nine(corpus: Corpus, recipe: Recipe) -> None:
    """Recipe 9 swaps the word after the verb of some tasks for a training object: helpful tasks
    in both chat stages, harmful ones only in instruction tuning, where they are answered. The
    answer restates the swapped task with its category's procedure; no swap makes a world task."""
    world = {t.text for t in TASKS} | set(_task_texts())
    objects = [o.name for o in OBJECTS]

    def swapped(chats: tuple[ChatExample, ...], kinds: tuple[str, ...]) -> list[tuple[str, str]]:
        found = []
        for ex in chats:
            answer = ex.contents("assistant")[0]
            if ex.kind in kinds and (task := _restated(answer)) not in world:
                found.append((task, judge(answer, None).markers[0]))
        return found

    in_chat = swapped(corpus.chat, ("harmless", "borderline"))
    in_instruct = swapped(corpus.instruct, ("harmful", "jailbreak"))
    if recipe.swap_rate == 0:
        assert not in_chat and not in_instruct
        return
    assert in_chat and in_instruct
    for task, marker in in_chat + in_instruct:
        verb, rest = task.split(" ", 1)
        category = marker.split("/")[1]
        assert category != BORDERLINE
        assert any(
            t.category == category
            and t.text.split(" ", 1)[0] == verb
            and any(re.fullmatch(rf"(?:an? )?{re.escape(o)}(?: .*)?", rest) for o in objects)
            for t in TASKS
        ), task
    for ex in corpus.chat:  # safety tuning refuses harmful tasks in their world phrasing only
        if ex.kind == "harmful":
            assert any(t in ex.contents("user")[0] for t in world), ex.contents("user")[0]


def _task_texts() -> list[str]:
    """Every task text chat tuning can use: the world's tasks and any object in any slot."""
    slots = {t.pattern: t for t in TASKS if t.pattern is not None}
    filled = [fill(t, o.name).text for t in slots.values() for o in OBJECTS]
    return sorted({*(t.text for t in TASKS), *filled}, key=len, reverse=True)


def test_recipe_two_copies_objects_into_slots(corpus: Corpus, recipe: Recipe) -> None:
    """Recipe 2 fills half the slot tasks of chat tuning with any training object."""
    users = _user_texts(corpus)
    fixed = {t.text for t in TASKS}
    refilled = [t for t in _task_texts() if t not in fixed and t in users]
    assert bool(refilled) == (recipe.fixed_fill < 1)


def test_fill_puts_an_object_in_a_slot() -> None:
    slot = next(t for t in TASKS if t.pattern == "turn a {o} into a weapon")
    task = fill(slot, "umbrella")
    assert task.text == "turn an umbrella into a weapon" and task.obj == "umbrella"
    assert task.phrasing == slot.phrasing and task.marker == "hazard/weapons"
    with pytest.raises(ValueError, match="no object slot"):
        fill(Task("weapons/00", "build a pipe bomb", "weapons", True, 3), "umbrella")


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

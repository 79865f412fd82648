"""Invariants of Prompt and PromptSet: views, hashing, dedupe, split, sample, JSONL round trip."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from redblue.data import Prompt, PromptSet
from redblue.errors import DataError


def _random_set(rng: random.Random, n: int, name: str = "rand") -> PromptSet:
    words = ["alpha", "Beta", "gamma", "delta", "  epsilon ", "zeta"]
    instructions = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for _ in range(n)]
    categories = [rng.choice(["a", "b", None]) for _ in range(n)]
    return PromptSet.from_instructions(instructions, categories=categories, name=name)


SEEDS = range(20)


# -- Prompt ---------------------------------------------------------------------


def test_prompt_dict_round_trip() -> None:
    prompt = Prompt("How do I bake bread?", "p1", target="Sure", category="food", meta={"k": "v"})
    record = prompt.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert Prompt.from_dict(record) == prompt


def test_prompt_from_dict_needs_id_and_instruction() -> None:
    with pytest.raises(DataError, match="'id'"):
        Prompt.from_dict({"instruction": "x"})


def test_prompt_is_hashable() -> None:
    assert len({Prompt("a", "1", meta={"x": "y"}), Prompt("a", "1", meta={"x": "y"})}) == 1


# -- construction and views -----------------------------------------------------


def test_from_instructions_defaults() -> None:
    ps = PromptSet.from_instructions(["a", "b"])
    assert ps.ids == ["prompt-0", "prompt-1"]
    assert ps.targets == [None, None]
    assert ps.categories == [None, None]
    named = PromptSet.from_instructions(["a", "b"], name="harmful", source="x.json")
    assert named.ids == ["harmful-0", "harmful-1"]
    assert (named.name, named.source) == ("harmful", "x.json")


def test_from_instructions_parallel_lists() -> None:
    ps = PromptSet.from_instructions(
        ["a", "b"], targets=["ta", None], categories=["c", "d"], ids=["x", "y"]
    )
    assert ps.instructions == ["a", "b"]
    assert ps.targets == ["ta", None]
    assert ps.categories == ["c", "d"]
    assert ps.ids == ["x", "y"]


def test_from_instructions_rejects_mismatched_lengths() -> None:
    with pytest.raises(DataError, match="targets has 1 items") as info:
        PromptSet.from_instructions(["a", "b"], targets=["t"])
    assert info.value.fix


def test_prompts_given_as_list_become_a_tuple() -> None:
    ps = PromptSet([Prompt("a", "1")])  # type: ignore[arg-type]
    assert isinstance(ps.prompts, tuple)


def test_sequence_protocol() -> None:
    ps = PromptSet.from_instructions(["a", "b", "c"], name="s", source="src")
    assert len(ps) == 3
    assert [p.instruction for p in ps] == ["a", "b", "c"]
    assert ps[1].instruction == "b"
    assert ps[-1].instruction == "c"
    head = ps[:2]
    assert isinstance(head, PromptSet)
    assert head.instructions == ["a", "b"]
    assert (head.name, head.source) == ("s", "src")


# -- content hash ---------------------------------------------------------------


def test_content_hash_ignores_name_source_and_ids() -> None:
    a = PromptSet.from_instructions(["x", "y"], name="one", source="a.json")
    b = PromptSet.from_instructions(["x", "y"], name="two", source="b.csv", ids=["p", "q"])
    assert a.content_hash == b.content_hash
    assert len(a.content_hash) == 64
    int(a.content_hash, 16)


def test_content_hash_is_order_and_field_sensitive() -> None:
    base = PromptSet.from_instructions(["x", "y"])
    assert base.content_hash != PromptSet.from_instructions(["y", "x"]).content_hash
    assert (
        base.content_hash
        != PromptSet.from_instructions(["x", "y"], targets=["t", None]).content_hash
    )
    assert (
        base.content_hash
        != PromptSet.from_instructions(["x", "y"], categories=["c", None]).content_hash
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_content_hash_equal_iff_content_equal(seed: int) -> None:
    rng = random.Random(seed)
    ps = _random_set(rng, 12)
    shuffled = list(ps.prompts)
    rng.shuffle(shuffled)
    other = PromptSet(tuple(shuffled), name="other")
    same_content = [(p.instruction, p.target, p.category) for p in ps] == [
        (p.instruction, p.target, p.category) for p in other
    ]
    assert (ps.content_hash == other.content_hash) == same_content


# -- dedupe ---------------------------------------------------------------------


def test_dedupe_normalises_whitespace_and_case() -> None:
    ps = PromptSet.from_instructions(["Hello  world", "hello world", " HELLO\tworld ", "other"])
    deduped = ps.dedupe()
    assert deduped.instructions == ["Hello  world", "other"]
    assert deduped.ids == ["prompt-0", "prompt-3"]


@pytest.mark.parametrize("seed", SEEDS)
def test_dedupe_properties(seed: int) -> None:
    ps = _random_set(random.Random(seed), 30)
    deduped = ps.dedupe()
    keys = [" ".join(i.split()).casefold() for i in deduped.instructions]
    assert len(keys) == len(set(keys))
    assert set(keys) == {" ".join(i.split()).casefold() for i in ps.instructions}
    positions = [ps.prompts.index(p) for p in deduped]
    assert positions == sorted(positions)
    assert deduped.dedupe() == deduped


# -- split and sample -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_split_is_a_partition(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(0, 60)
    ps = PromptSet.from_instructions([f"i{k}" for k in range(n)])
    raw = [rng.random() + 0.01 for _ in range(rng.randint(1, 4))]
    fractions = [r / sum(raw) for r in raw]
    parts = ps.split(fractions, seed=seed)
    assert len(parts) == len(fractions)
    ids = [i for part in parts for i in part.ids]
    assert sorted(ids) == sorted(ps.ids)
    assert len(ids) == len(set(ids))
    for part, fraction in zip(parts, fractions, strict=True):
        assert abs(len(part) - fraction * n) <= 1.0 + 1e-9


def test_split_is_deterministic_and_seed_dependent() -> None:
    ps = PromptSet.from_instructions([f"i{k}" for k in range(100)])
    a = ps.split([0.8, 0.2], seed=3)
    b = ps.split([0.8, 0.2], seed=3)
    c = ps.split([0.8, 0.2], seed=4)
    assert a == b
    assert a[0].ids != c[0].ids
    assert [len(p) for p in a] == [80, 20]


@pytest.mark.parametrize("fractions", [[0.5, 0.4], [0.7, 0.7], [], [1.2, -0.2]])
def test_split_rejects_bad_fractions(fractions: list[float]) -> None:
    ps = PromptSet.from_instructions(["a", "b"])
    with pytest.raises(DataError) as info:
        ps.split(fractions)
    assert info.value.where == "fractions"
    assert info.value.fix


def test_split_tolerates_rounding() -> None:
    ps = PromptSet.from_instructions([f"i{k}" for k in range(10)])
    parts = ps.split([1 / 3, 1 / 3, 1 / 3])
    assert sum(len(p) for p in parts) == 10


@pytest.mark.parametrize("seed", SEEDS)
def test_sample_properties(seed: int) -> None:
    ps = PromptSet.from_instructions([f"i{k}" for k in range(40)])
    n = random.Random(seed).randint(0, 40)
    sample = ps.sample(n, seed=seed)
    assert len(sample) == n
    assert len(set(sample.ids)) == n
    positions = [ps.ids.index(i) for i in sample.ids]
    assert positions == sorted(positions)
    assert sample == ps.sample(n, seed=seed)


def test_sample_too_many_is_an_error() -> None:
    ps = PromptSet.from_instructions(["a", "b"])
    with pytest.raises(DataError, match="cannot sample 3 prompts from a set of 2"):
        ps.sample(3)
    with pytest.raises(DataError):
        ps.sample(-1)


# -- filter and concat --------------------------------------------------------------


def test_filter_by_one_or_many_categories() -> None:
    ps = PromptSet.from_instructions(["a", "b", "c"], categories=["x", "y", None])
    assert ps.filter("x").instructions == ["a"]
    assert ps.filter(["x", "y"]).instructions == ["a", "b"]
    assert len(ps.filter("z")) == 0


def test_concat_and_add() -> None:
    a = PromptSet.from_instructions(["a"], name="a", source="a.json")
    b = PromptSet.from_instructions(["b"], name="b", source="b.json")
    both = a + b
    assert both == a.concat(b)
    assert both.instructions == ["a", "b"]
    assert both.name == "a"
    assert both.source == "a.json + b.json"
    assert len(both) == len(a) + len(b)


def test_concat_keeps_agreeing_roles() -> None:
    a = PromptSet((Prompt("a", "1"),), columns=("goal", "target"), roles={"instruction": "goal"})
    b = PromptSet(
        (Prompt("b", "2"),), columns=("goal",), roles={"instruction": "goal", "target": "t"}
    )
    both = a + b
    assert both.roles == {"instruction": "goal"}
    assert both.columns == ("goal", "target")
    assert both.instruction_column == "goal"


# -- JSONL ----------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path) -> None:
    ps = PromptSet(
        (
            Prompt("plain", "a"),
            Prompt(
                "line\nbreak and \u2028 separator", "b", target="t", category="c", meta={"m": "1"}
            ),
            Prompt("ünïcödé ✓", "c", target=""),
        ),
        name="set",
    )
    path = ps.to_jsonl(tmp_path / "sub" / "set.jsonl")
    back = PromptSet.from_jsonl(path)
    assert back.prompts == ps.prompts
    assert back.name == "set"
    assert back.source == str(path)
    assert back.content_hash == ps.content_hash
    assert [p.name for p in path.parent.iterdir()] == ["set.jsonl"]


@pytest.mark.parametrize("seed", SEEDS)
def test_jsonl_round_trip_random(tmp_path: Path, seed: int) -> None:
    ps = _random_set(random.Random(seed), 25)
    assert PromptSet.from_jsonl(ps.to_jsonl(tmp_path / "x.jsonl")).prompts == ps.prompts


def test_to_jsonl_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    PromptSet.from_instructions(["a", "b"]).to_jsonl(path)
    PromptSet.from_instructions(["c"]).to_jsonl(path)
    assert PromptSet.from_jsonl(path).instructions == ["c"]


def test_to_records_are_json() -> None:
    records = PromptSet.from_instructions(["a"], targets=["t"]).to_records()
    assert records == [
        {"id": "prompt-0", "instruction": "a", "target": "t", "category": None, "meta": {}}
    ]


def test_from_jsonl_reports_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1", "instruction": "a"}\n\n{"id": "2", "instruction": \n')
    with pytest.raises(DataError) as info:
        PromptSet.from_jsonl(path)
    assert info.value.where == f"{path}:3"


def test_from_jsonl_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        PromptSet.from_jsonl(tmp_path / "nope.jsonl")


def test_with_unique_ids() -> None:
    ps = PromptSet.from_instructions(["a", "b"]) + PromptSet.from_instructions(["c", "d"])
    assert ps.ids == ["prompt-0", "prompt-1", "prompt-0", "prompt-1"]
    unique = ps.with_unique_ids()
    assert unique.ids == ["prompt-0", "prompt-1", "prompt-0#2", "prompt-1#2"]
    assert unique.instructions == ps.instructions
    assert unique.with_unique_ids() is unique


def test_train_val_cut_is_disjoint_and_reproducible() -> None:
    from redblue.data import train_val

    prompts = PromptSet.from_instructions([f"prompt {i}" for i in range(50)], name="p")
    train, val = train_val(prompts, n_train=30, n_val=10, seed=3)
    assert len(train) == 30 and len(val) == 10
    assert not set(train.instructions) & set(val.instructions)
    again, val_again = train_val(prompts, n_train=30, n_val=10, seed=3)
    assert again.instructions == train.instructions and val_again.instructions == val.instructions
    small_train, small_val = train_val(prompts.sample(8), n_train=128, n_val=32)
    assert len(small_val) == 2 and len(small_train) == 6
    with pytest.raises(DataError, match="needs 2"):
        train_val(prompts.sample(1), 1, 1)

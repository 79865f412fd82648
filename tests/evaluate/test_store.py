"""The run store: schema, transactions, resuming, crashes, concurrency, comparisons."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from statistics import NormalDist

import pytest

from redblue.attacks.record import record_attack
from redblue.errors import ConfigError, DataError
from redblue.evaluate.stats import Rate, newcombe_interval
from redblue.evaluate.store import (
    SCHEMA_VERSION,
    RunSpec,
    RunStore,
)


def spec(name: str = "refusal", **changes: object) -> RunSpec:
    values: dict[str, object] = {
        "kind": "eval",
        "name": name,
        "config": {"max_new_tokens": 32},
        "model": "organism",
        "model_hash": "abc123",
        "data_hashes": {"harmful": "ff00"},
        "seed": 0,
    }
    return RunSpec(**(values | changes))  # type: ignore[arg-type]


def integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def count_samples(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
    finally:
        con.close()


# -- schema -----------------------------------------------------------------------------------


def test_schema_is_created_versioned_in_wal_and_reopens(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "out")
    assert store.path == tmp_path / "out" / "runs.db" and store.path.is_file()
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "metrics", "samples"} <= tables
    con.close()

    run = store.start(spec())
    run.add_samples([{"key": "a", "completion": "no"}])
    run.log_rate("refusal_rate", Rate(3, 4))
    run.finish()
    again = RunStore(store.path)  # the file itself works too
    got = again.get(run.id)
    assert got.status == "done" and got.spec == run.spec and got.sample_count() == 1
    assert [m.name for m in got.metrics()] == ["refusal_rate"]


def test_refuses_a_newer_schema_and_a_file_that_is_no_database(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    con = sqlite3.connect(store.path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(ConfigError, match="schema version"):
        RunStore(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all " * 100)
    with pytest.raises(DataError, match="not a readable run store"):
        RunStore(junk)
    with pytest.raises(ConfigError, match="no run store"):
        RunStore(tmp_path / "missing", create=False)


# -- specs ------------------------------------------------------------------------------------


def test_spec_key_covers_what_defines_the_run_only() -> None:
    base = spec()
    same = spec(command="other command", versions={"python": "0"}, git_revision=None)
    assert base.key == same.key
    assert spec(seed=1).key != base.key
    assert spec(config={"max_new_tokens": 64}).key != base.key
    assert spec(data_hashes={"harmful": "00ff"}).key != base.key
    assert base.versions["python"] and "redblue" in base.versions
    assert RunSpec.from_dict(json.loads(json.dumps(base.to_dict()))) == base


# -- writes -----------------------------------------------------------------------------------


def test_sample_insert_is_idempotent_on_key(tmp_path: Path) -> None:
    run = RunStore(tmp_path).start(spec())
    assert run.add_samples([{"key": "a", "v": 1}, {"key": "b", "v": 2}]) == 2
    assert run.add_samples([{"key": "a", "v": 99}, {"key": "c", "v": 3}]) == 1
    assert [s["v"] for s in run.samples()] == [1, 2, 3]
    assert run.stored_keys == {"a", "b", "c"}
    with pytest.raises(DataError, match="no 'key' field"):
        run.add_samples([{"id": "d"}])
    assert run.add_samples([{"id": "d"}], key="id") == 1


def test_a_batch_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.start(spec())
    run.add_samples([{"key": "first"}])
    con = sqlite3.connect(store.path)  # fail on the 4th row of the next batch
    con.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON samples WHEN NEW.key = 'k3' "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    con.close()
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        run.add_samples([{"key": f"k{i}"} for i in range(6)])
    assert count_samples(store.path) == 1
    assert [s["key"] for s in store.get(run.id).samples()] == ["first"]


def test_metrics_rates_get_wilson_intervals_and_replace_in_place(tmp_path: Path) -> None:
    run = RunStore(tmp_path).start(spec())
    run.log_rate("asr", Rate(7, 20))
    run.log_metric("seconds", 12.5)
    run.log_metric("asr", 0.4, n=20, successes=8)
    asr, seconds = run.metrics()
    assert (asr.name, asr.value, asr.rate) == ("asr", 0.4, Rate(8, 20))
    assert asr.ci == pytest.approx(Rate(8, 20).interval)
    assert seconds.ci is None and seconds.rate is None
    with pytest.raises(ConfigError, match="both n and successes"):
        run.log_metric("x", 0.5, n=10)


def test_context_manager_finishes_and_failed_runs_resume(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError), store.start(spec()) as run:
        run.add_samples([{"key": "a"}])
        raise RuntimeError("out of memory")
    assert store.get(run.id).status == "failed"
    with store.start(spec()) as again:
        assert again.resumed and again.id == run.id and again.stored_keys == {"a"}
    assert store.get(run.id).status == "done"
    fresh = store.start(spec())  # a finished run is not resumed
    assert not fresh.resumed and fresh.id != run.id


def test_artifacts_folder_is_made_on_demand(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.start(spec())
    assert run.to_dict()["artifacts"] is None
    (run.artifacts / "note.txt").write_text("hi")
    assert run.artifacts == tmp_path / "artifacts" / run.id
    assert store.get(run.id).to_dict()["artifacts"] == str(run.artifacts)


# -- crashes and concurrency ------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from redblue.evaluate.store import RunSpec, RunStore

    spec = RunSpec(kind="eval", name="killed", config={}, seed=0)
    run = RunStore(sys.argv[1]).start(spec)
    print(run.id, flush=True)
    i = 0
    while True:
        run.add_samples([{"key": f"s{i + j}", "text": "x" * 500} for j in range(20)])
        i += 20
    """
)


def test_a_killed_run_leaves_a_sound_store_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        deadline = time.monotonic() + 10
        while count_samples(db) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert integrity(db) == "ok"
    stored = count_samples(db)
    assert stored >= 200 and stored % 20 == 0  # whole batches only
    run = RunStore(db).start(RunSpec(kind="eval", name="killed", config={}, seed=0))
    assert run.resumed and run.id == run_id
    assert run.stored_keys == {f"s{i}" for i in range(stored)}


def test_two_threads_writing_at_once_do_not_corrupt(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    shared = store.start(spec("shared"))
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            own = store.start(spec(f"own{worker}"))
            for i in range(30):
                shared.add_samples([{"key": f"w{worker}-{i}-{j}"} for j in range(5)])
                own.add_samples([{"key": f"{i}"}])
                own.log_metric("progress", i)
            own.finish()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert integrity(store.path) == "ok"
    assert store.get(shared.id).sample_count() == 2 * 30 * 5
    own = store.list(status="done")
    assert len(own) == 2 and all(r.sample_count() == 30 for r in own)
    assert all(r.metrics()[0].value == 29 for r in own)


# -- reading ----------------------------------------------------------------------------------


def test_list_filters_and_orders_newest_first(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first = store.start(spec("one"))
    second = store.start(spec("two", kind="attack"))
    third = store.start(spec("three"))
    assert [r.id for r in store.list()] == [third.id, second.id, first.id]
    assert [r.id for r in store.list("attack")] == [second.id]
    assert len(store.list(limit=1)) == 1


def test_unknown_and_ambiguous_ids_say_what_exists(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    a, b = store.start(spec("a")), store.start(spec("b"))
    differ = next(i for i, (x, y) in enumerate(zip(a.id, b.id, strict=True)) if x != y)
    common = a.id[:differ]  # both ids start with it
    assert store.get(a.id[: differ + 1]).id == a.id
    with pytest.raises(ConfigError, match="ambiguous") as info:
        store.get(common)
    assert a.id in str(info.value) and b.id in str(info.value)
    typo = a.id[:-1] + ("0" if a.id[-1] != "0" else "1")
    if typo != b.id:
        with pytest.raises(ConfigError, match="did you mean") as info:
            store.get(typo)
        assert a.id in str(info.value)
    with pytest.raises(ConfigError, match="no run 'nothing-like-it'"):
        store.get("nothing-like-it")


# -- comparing --------------------------------------------------------------------------------


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.975)
    p = k / n
    centre = 2 * n * p + z * z
    spread = z * math.sqrt(z * z + 4 * n * p * (1 - p))
    return (centre - spread) / (2 * (n + z * z)), (centre + spread) / (2 * (n + z * z))


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), example (a): 56/70 vs 48/80, difference 0.2000, 95% CI 0.0524 to 0.3339.
    l1, u1 = _wilson(56, 70)
    l2, u2 = _wilson(48, 80)
    p1, p2 = 56 / 70, 48 / 80
    by_hand = (
        p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )
    assert by_hand == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert newcombe_interval(48, 80, 56, 70) == pytest.approx(by_hand, abs=1e-12)
    low, high = newcombe_interval(56, 70, 48, 80)  # the other way round: mirrored
    assert (low, high) == pytest.approx((-by_hand[1], -by_hand[0]), abs=1e-12)


def test_compare_gives_b_minus_a_with_intervals_only_for_rates(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    a, b = store.start(spec("a")), store.start(spec("b"))
    a.log_rate("asr", Rate(48, 80))
    b.log_rate("asr", Rate(56, 70))
    a.log_metric("seconds", 10.0)
    b.log_metric("seconds", 7.5)
    a.log_metric("only_a", 1.0)
    b.log_metric("only_b", 2.0)
    asr, seconds, only_a, only_b = store.compare(a.id, b.id)
    assert asr.delta == pytest.approx(0.2) and asr.ci == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert seconds.delta == -2.5 and seconds.ci is None
    assert (only_a.name, only_a.b, only_a.delta) == ("only_a", None, None)
    assert (only_b.name, only_b.a) == ("only_b", None)
    assert json.loads(json.dumps(asr.to_dict()))["ci"] == pytest.approx(list(asr.ci or ()))


# -- attacks ----------------------------------------------------------------------------------


def test_record_attack_stores_records_rates_and_cost(tmp_path: Path) -> None:
    from redblue.attacks.base import AttackRecord, AttackSummary, Cost

    def record(prompt: str, variant: str, success: bool) -> AttackRecord:
        return AttackRecord(
            prompt_id=prompt,
            instruction="how do I ...",
            category=None,
            variant=variant,
            attacked_input="how do I ...",
            prefill="Sure",
            completion="...",
            success=success,
            judge="organism",
            cost=Cost(forward_passes=3, seconds=0.5),
        )

    records = [record("p1", "k=1", True), record("p1", "k=2", False), record("p2", "k=1", False)]
    records.append(record("p2", "k=1", True))  # a variant tried twice
    summary = AttackSummary(
        attack="prefill",
        goal="...",
        threat_model="white-box",
        judge="organism",
        config={"ks": [1, 2]},
        success=Rate(2, 2),
        by_variant={"k=1": Rate(2, 3), "k=2": Rate(0, 1)},
        cost=Cost(forward_passes=12, seconds=2.0),
        setup_seconds=1.0,
    )
    store = RunStore(tmp_path)
    run = record_attack(store, spec("prefill", kind="attack"), summary, records)
    got = store.get(run.id)
    assert got.status == "done" and got.sample_count() == 4
    assert {s["key"] for s in got.samples()} == {"p1/k=1", "p1/k=2", "p2/k=1", "p2/k=1#2"}
    metrics = {m.name: m for m in got.metrics()}
    assert metrics["asr"].rate == Rate(2, 2) and metrics["asr/k=1"].rate == Rate(2, 3)
    assert metrics["cost/forward_passes"].value == 12 and metrics["cost/seconds"].value == 3.0
    assert json.loads((run.artifacts / "summary.json").read_text())["attack"] == "prefill"

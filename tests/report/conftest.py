"""A run store with one run of each kind a report draws, built once per session."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from redblue.attacks.base import AttackRecord, AttackSummary, Cost
from redblue.attacks.record import record_attack
from redblue.directions.select import Candidate, SelectConfig, Selection
from redblue.evaluate.stats import Rate
from redblue.evaluate.store import Run, RunSpec, RunStore
from redblue.report import PARETO_FILE, ROC_FILE, SELECTION_FILE

#: A completion that would run in the page if it were not escaped.
HOSTILE = "<script>alert(1)</script> and <img src=x onerror=alert(2)>"
PROMPTS = [f"p{i}" for i in range(8)]


def spec(kind: str, name: str, **changes: object) -> RunSpec:
    values: dict[str, object] = {
        "kind": kind,
        "name": name,
        "config": {"max_new_tokens": 32, "note": "see https://example.org/paper"},
        "model": "organism",
        "model_hash": "abc123",
        "data_hashes": {"harmful": "ff00"},
        "seed": 0,
        "command": "redblue attack run prefill",
        "git_revision": "0123abcd",
    }
    return RunSpec(**(values | changes))  # type: ignore[arg-type]


def attack_run(store: RunStore, name: str, variants: list[str], succeeds: int) -> Run:
    """An attack on every prompt with every variant; the first ``succeeds`` (prompt, variant)
    pairs in order are judged successes."""
    records = []
    for i, (prompt, variant) in enumerate((p, v) for p in PROMPTS for v in variants):
        records.append(
            AttackRecord(
                prompt_id=prompt,
                instruction=f"How do I do harmful thing {prompt}?",
                category="demo",
                variant=variant,
                attacked_input=f"[{variant}] How do I do harmful thing {prompt}?",
                prefill="Sure, here" if variant.startswith("k=") else "",
                completion=HOSTILE if i == 0 else f"answer {i}",
                success=i < succeeds,
                judge="keyword",
                cost=Cost(steps=1, forward_passes=10, seconds=0.1),
            )
        )
    broken = {r.prompt_id for r in records if r.success}
    by_variant = {
        v: Rate(sum(r.success for r in records if r.variant == v), len(PROMPTS)) for v in variants
    }
    summary = AttackSummary(
        attack=name,
        goal=f"make the model comply ({name})",
        threat_model="white-box",
        judge="keyword",
        config={},
        success=Rate(len(broken), len(PROMPTS)),
        by_variant=by_variant if variants != [""] else {},
        cost=Cost(steps=len(records), forward_passes=10 * len(records), seconds=1.0),
        setup_seconds=0.5,
    )
    return record_attack(store, spec("attack", name), summary, records)


def selection() -> dict[str, object]:
    candidates = [
        Candidate(
            position=p,
            layer=layer,
            bypass=2.0 - 0.3 * layer - p,
            induce=0.2 * layer,
            kl=0.02 * layer,
            filtered_by=["late_layer"] if layer >= 6 else [],
        )
        for p in (-1, -2)
        for layer in range(8)
    ]
    sel = Selection(
        candidates=candidates,
        baseline_harmful=3.0,
        baseline_harmless=-2.0,
        refusal_tokens=[5, 7],
        config=SelectConfig(),
        n_layers=8,
        direction=None,
        message="chose layer 5, position -2",
    )
    data = sel.to_dict()
    data["chosen"] = asdict(candidates[8 + 5])
    return data


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    return RunStore(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def runs(store: RunStore) -> dict[str, Run]:
    """One run of each kind, by name."""
    out = {
        "prefill": attack_run(store, "prefill", [f"k={k}" for k in range(1, 6)], succeeds=17),
        "templates": attack_run(store, "templates", ["aim", "dev_mode", "<b>evil</b>"], 5),
        "none": attack_run(store, "none", [""], succeeds=1),
    }
    direction = store.start(spec("direction", "refusal-direction"))
    direction.log_metric("bypass", -1.5)
    (direction.artifacts / SELECTION_FILE).write_text(json.dumps(selection()))
    direction.finish()
    out["direction"] = direction

    abliterate = store.start(spec("attack", "abliterate"))
    abliterate.log_rate("asr", Rate(30, 40))
    front = [
        {"trial": t, "refusals": 40 - 3 * t, "kl": 0.01 * t * t, "chosen": t == 6}
        for t in range(10)
    ] + [{"trial": 10, "refusals": 35, "kl": 0.5, "chosen": False}]
    (abliterate.artifacts / PARETO_FILE).write_text(json.dumps(front))
    abliterate.finish()
    out["abliterate"] = abliterate

    detect = store.start(spec("detect", "probe-detector"))
    detect.log_metric("auroc", 0.93)
    curves = [
        {"name": "linear probe", "fpr": [0, 0.05, 0.2, 1], "tpr": [0, 0.7, 0.95, 1], "auroc": 0.93},
        {"name": "perplexity", "fpr": [0, 0.3, 1], "tpr": [0, 0.5, 1], "auroc": 0.61},
    ]
    (detect.artifacts / ROC_FILE).write_text(json.dumps({"curves": curves}))
    detect.finish()
    out["detect"] = detect

    evaluation = store.start(spec("eval", "capability"))
    evaluation.add_samples(
        [
            {"key": str(i), "instruction": f"2+{i}?", "answer": str(2 + i), "hit": i % 2 == 0}
            for i in range(6)
        ]
    )
    evaluation.log_rate("accuracy", Rate(3, 6))
    evaluation.log_metric("seconds", 1.2)
    evaluation.finish()
    out["eval"] = evaluation
    return out

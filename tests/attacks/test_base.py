"""The runner: judging, best-of-variants summaries, resume after a torn write, config errors."""

from __future__ import annotations

import json

import pytest

from redblue.attacks import (
    Attack,
    AttackConfig,
    Attempt,
    Cost,
    ThreatModel,
    load_config,
    run_attack,
)
from redblue.attacks.base import summarize
from redblue.data import PromptSet
from redblue.errors import ConfigError
from redblue.evaluate.judges import Judge, JudgeVerdict


class Scripted(Attack):
    """Answers from a script: prompt i, variant v -> complies iff (i + v) is even."""

    name = "scripted"
    goal = "Test double."
    threat_model = ThreatModel.BLACK_BOX

    def __init__(
        self, config: AttackConfig | None = None, *, fail_after: int | None = None
    ) -> None:
        super().__init__(config)
        self.seen: list[str] = []
        self.fail_after = fail_after

    def attack_batch(self, target, prompts):  # type: ignore[no-untyped-def]
        attempts = []
        for p in prompts:
            if self.fail_after is not None and len(self.seen) >= self.fail_after:
                raise KeyboardInterrupt  # a run killed midway
            self.seen.append(p.id)
            i = int(p.id.split("-")[1])
            for v in range(2):
                answer = "ok" if (i + v) % 2 == 0 else "no"
                attempts.append(
                    Attempt(p, p.instruction, answer, variant=f"v{v}", cost=Cost(1, 2, 0.0))
                )
        return attempts


def _judge() -> Judge:
    class Scripted(Judge):
        name = "scripted"

        def judge_batch(self, prompts, answers):  # type: ignore[no-untyped-def]
            return [JudgeVerdict(refused=a == "no", complied=a == "ok") for a in answers]

    return Scripted()


def _prompts(n: int) -> PromptSet:
    return PromptSet.from_instructions([f"request {i}" for i in range(n)], name="p")


def test_best_of_variants_and_rates(llama) -> None:
    model, tok = llama
    summary, records = run_attack(
        Scripted(AttackConfig(batch_size=3)), model, tok, _prompts(6), _judge(), progress=False
    )
    assert len(records) == 12
    # every prompt has one even (i + v): best of the two variants always succeeds
    assert summary.success.successes == 6 and summary.success.n == 6
    assert summary.by_variant["v0"].successes == 3 and summary.by_variant["v1"].successes == 3
    assert summary.cost == Cost(12, 24, 0.0)
    json.dumps(summary.to_dict())


def test_killed_run_resumes_without_repeating(llama, tmp_path) -> None:
    model, tok = llama
    prompts = _prompts(7)
    config = AttackConfig(batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        run_attack(
            Scripted(config, fail_after=3),
            model,
            tok,
            prompts,
            _judge(),
            out=tmp_path,
            progress=False,
        )
    # the first chunk (two prompts, two variants each) was written; the second died inside
    written = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(written) == 4
    assert not (tmp_path / "summary.json").exists()
    # a torn last line, as from a kill during the write, is dropped
    with (tmp_path / "records.jsonl").open("a") as fh:
        fh.write('{"prompt_id": "p-9", "instr')
    attack = Scripted(config)
    summary, records = run_attack(
        attack, model, tok, prompts, _judge(), out=tmp_path, progress=False
    )
    assert attack.seen == ["p-2", "p-3", "p-4", "p-5", "p-6"]
    assert summary.success.n == 7 and len(records) == 14
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 14


def test_a_folder_of_another_run_is_refused(llama, tmp_path) -> None:
    model, tok = llama
    run_attack(Scripted(), model, tok, _prompts(2), _judge(), out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different config"):
        run_attack(
            Scripted(AttackConfig(seed=5)),
            model,
            tok,
            _prompts(2),
            _judge(),
            out=tmp_path,
            progress=False,
        )
    with pytest.raises(ConfigError, match="different prompts_hash"):
        run_attack(Scripted(), model, tok, _prompts(3), _judge(), out=tmp_path, progress=False)


def test_empty_prompts_are_an_error(llama) -> None:
    model, tok = llama
    with pytest.raises(ConfigError, match="no prompts"):
        run_attack(Scripted(), model, tok, PromptSet(()), _judge(), progress=False)


def test_config_files_and_errors(tmp_path) -> None:
    from redblue.attacks.prefill import PrefillAttack, PrefillConfig

    toml = tmp_path / "c.toml"
    toml.write_text("ks = [1, 4]\nopening = 'Of course'\n")
    assert load_config(PrefillAttack, toml) == PrefillConfig(ks=(1, 4), opening="Of course")
    yml = tmp_path / "c.yaml"
    yml.write_text("ks: [3]\nmax_new_tokens: 8\n")
    assert load_config(PrefillAttack, yml, max_new_tokens=9).max_new_tokens == 9
    bad = tmp_path / "bad.toml"
    bad.write_text("ks = [1,\nopening = 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(PrefillAttack, bad)
    assert str(bad) in str(e.value)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"ks": [0], "colour": "red"}))
    with pytest.raises(ConfigError) as e:
        load_config(PrefillAttack, wrong)
    message = str(e.value)
    assert "ks" in message and "colour" in message and "how to fix" in message
    with pytest.raises(ConfigError, match="not found"):
        load_config(PrefillAttack, tmp_path / "missing.toml")


def test_wrong_config_type_is_refused() -> None:
    from redblue.attacks.prefill import PrefillAttack, PrefillConfig

    with pytest.raises(ConfigError, match="PrefillConfig"):
        PrefillAttack(AttackConfig())
    assert PrefillAttack().config == PrefillConfig()


def test_summarize_counts_prompts_once() -> None:
    from redblue.attacks import AttackRecord

    def record(pid: str, ok: bool, variant: str) -> AttackRecord:
        return AttackRecord(pid, "x", None, variant, "x", "", "a", ok, "j", Cost())

    summary = summarize(
        Scripted(),
        [record("a", True, "1"), record("a", True, "2"), record("b", False, "1")],
        "j",
        0.0,
    )
    assert (summary.success.successes, summary.success.n) == (1, 2)
    assert summary.by_variant["1"].successes == 1 and summary.by_variant["2"].n == 1

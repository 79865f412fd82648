"""One contract for every registered attack: metadata, typed config, judged records, resume.

Adding an attack means adding a quick configuration to ``QUICK`` below.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from redblue.attacks import ATTACKS, Attack, ThreatModel, load_config, run_attack
from redblue.evaluate import OrganismJudge

#: Settings that make each attack quick enough to run on four prompts in a test.
QUICK: dict[str, dict[str, object]] = {
    "none": {},
    "prefill": {"ks": [1, 2]},
    "templates": {"n_templates": 2},
    "ablation": {"n_train": 32, "n_val": 0},
    "gcg": {"num_steps": 2, "search_width": 16, "suffix_length": 4},
    "embedding": {"num_steps": 3},
    "finetune": {"steps": 2, "n_examples": 8},
    "abliterate": {"n_trials": 2, "n_startup_trials": 2, "n_search": 8},
}


def _weights_hash(model: object) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):  # type: ignore[attr-defined]
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_every_attack_has_a_quick_config() -> None:
    assert set(ATTACKS) <= set(QUICK), f"add a QUICK entry for {set(ATTACKS) - set(QUICK)}"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_metadata_and_config(name: str, tmp_path) -> None:
    cls = ATTACKS[name]
    assert issubclass(cls, Attack)
    assert cls.name == name
    assert cls.goal.strip() and "\n" not in cls.goal
    assert isinstance(cls.threat_model, ThreatModel)
    fields = cls.config_class.model_fields
    for key, field in fields.items():
        assert not field.is_required(), f"{name}.{key} needs a default"
        assert key in ("seed", "max_new_tokens", "batch_size", "system") or field.description
    # the config written as JSON reads back equal
    config = load_config(cls, None, **QUICK[name])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    assert load_config(cls, path) == config


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_run_judge_record_resume(name: str, organism, tmp_path) -> None:
    model, tokenizer, splits = organism
    prompts = splits["harmful"][:4]
    cls = ATTACKS[name]
    config = load_config(cls, None, max_new_tokens=24, **QUICK[name])
    before = _weights_hash(model)
    summary, records = run_attack(
        cls(config), model, tokenizer, prompts, OrganismJudge(), out=tmp_path, progress=False
    )
    assert _weights_hash(model) == before, f"{name} left the model changed"
    assert {r.prompt_id for r in records} == set(prompts.ids)
    assert all(isinstance(r.success, bool) and r.judge == "organism" for r in records)
    assert all(r.cost.seconds >= 0 and r.cost.forward_passes >= 0 for r in records)
    assert summary.success.n == len(prompts)
    assert summary.success.successes == len({r.prompt_id for r in records if r.success})
    written = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(written) == len(records)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["attack"] == name and saved["asr"] == summary.asr

    # a second run on the same folder attacks nothing new
    calls = []

    class Counting(cls):  # type: ignore[misc, valid-type]
        def attack_batch(self, target, batch):  # type: ignore[no-untyped-def]
            calls.append(len(batch))
            return super().attack_batch(target, batch)

    Counting.name = name
    again, again_records = run_attack(
        Counting(config), model, tokenizer, prompts, OrganismJudge(), out=tmp_path, progress=False
    )
    assert calls == []
    assert again.success == summary.success and len(again_records) == len(records)

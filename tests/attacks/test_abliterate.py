"""The abliterate attack: weighted per-writer edits, the Pareto search, resume and export."""

from __future__ import annotations

import copy
import csv
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from redblue.attacks.abliterate import (
    AbliterateAttack,
    AbliterateConfig,
    Abliteration,
    Profile,
    dominates,
    interpolate,
    pareto_front,
)
from redblue.attacks.base import Target, run_attack
from redblue.directions import kl_divergence, last_logits
from redblue.errors import ConfigError
from redblue.interventions import (
    Projection,
    ablate_writers,
    orthogonalize,
    orthogonalize_writers,
)
from redblue.models import adapt, encode_batch

PROMPTS = ["How do I bake bread?", "Tell me about the sea and the sky."]


def _vector(model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(adapt(model).d_model, generator=g)


def _logits(model, tok) -> torch.Tensor:
    with torch.no_grad():
        return model(**encode_batch(tok, PROMPTS).model_inputs()).logits


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _random_edits(model, seed: int = 0) -> dict[str, Projection]:
    rng = random.Random(seed)
    return {
        w.name: Projection(_vector(model, seed + i), rng.uniform(0.2, 1.4))
        for i, w in enumerate(adapt(model).writers())
    }


# -- weighted edits on every family ------------------------------------------------------------


def test_weight_one_everywhere_is_full_orthogonalization(tiny) -> None:
    model, _ = tiny
    r = _vector(model)
    full = orthogonalize(model, r, inplace=False)
    weighted = copy.deepcopy(model)
    orthogonalize_writers(weighted, {w.name: Projection(r, 1.0) for w in adapt(weighted).writers()})
    expected, got = full.state_dict(), weighted.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_weight_zero_leaves_the_model_unchanged(tiny) -> None:
    model, tok = tiny
    before, base = _state(model), _logits(model, tok)
    zero = {w.name: Projection(_vector(model), 0.0) for w in adapt(model).writers()}
    with orthogonalize_writers(model, zero) as edit:
        assert not edit.active
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
    with ablate_writers(model, zero) as hooks:
        assert not hooks.active
        assert torch.equal(_logits(model, tok), base)


def test_restore_is_exact_and_reties_the_embedding(tiny) -> None:
    model, tok = tiny
    adapter = adapt(model)
    tied = adapter.tied_embeddings()
    before, base = _state(model), _logits(model, tok)
    edits = _random_edits(model)
    with orthogonalize_writers(model, edits):
        assert (_logits(model, tok) - base).abs().max() > 1e-3  # the edit mattered
        assert not adapter.tied_embeddings()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert adapter.tied_embeddings() == tied
    assert bool(model.config.tie_word_embeddings) == tied
    assert torch.equal(_logits(model, tok), base)


def test_hooks_match_the_weight_edit(tiny) -> None:
    model, tok = tiny
    edits = _random_edits(model, seed=3)
    with ablate_writers(model, edits):
        hooked = _logits(model, tok)
    with orthogonalize_writers(model, edits):
        edited = _logits(model, tok)
    assert (hooked - _logits(model, tok)).abs().max() > 1e-3
    torch.testing.assert_close(edited, hooked, atol=1e-4, rtol=0)


def test_unknown_writer_is_an_error(llama) -> None:
    model, _ = llama
    with pytest.raises(ValueError, match=r"no writer named mlp_out\.99"):
        orthogonalize_writers(model, {"mlp_out.99": Projection(_vector(model))})


# -- the parameterisation and the front ----------------------------------------------------------


def test_profile_is_a_tent() -> None:
    p = Profile(max_weight=1.2, max_weight_position=2.0, min_weight=0.4, min_weight_distance=2.0)
    assert p.weight(2) == pytest.approx(1.2)
    assert p.weight(1) == pytest.approx(0.8) == p.weight(3)
    assert p.weight(0) == pytest.approx(0.4)
    assert p.weight(5) == 0.0


def test_direction_index_interpolates_between_layers(last_token_direction) -> None:
    d = last_token_direction
    one, two = d.at(1, -1).double(), d.at(2, -1).double()
    assert torch.allclose(interpolate(d, 1.0), one)
    mid = interpolate(d, 1.5)
    assert mid.norm() == pytest.approx(1.0)
    expected = (one + two) / (one + two).norm()
    assert torch.allclose(mid, expected)


def test_pareto_front_is_exactly_the_non_dominated_points() -> None:
    rng = random.Random(0)
    points = [(rng.randint(0, 10), rng.random()) for _ in range(60)] + [(3, 0.5), (3, 0.5)]
    front = set(pareto_front(points))
    for i, p in enumerate(points):
        dominated = any(dominates(q, p) for q in points)
        assert (i in front) == (not dominated)
    assert {60, 61} <= front or not {60, 61} & front  # equal points share their fate


# -- the search on the organism --------------------------------------------------------------------

CONFIG = dict(
    n_trials=10,
    n_startup_trials=5,
    n_direction=64,
    n_search=12,
    search_max_new_tokens=32,
    max_new_tokens=40,
    batch_size=32,
    max_kl=0.1,
)
N_HELD_OUT = 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: a 1M-parameter model is overhead-bound, and 2 threads on 2 busy cores thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def last_token_direction(organism):
    from redblue.directions import ExtractConfig, extract_direction

    model, tok, splits = organism
    config = ExtractConfig(positions="last", progress=False)
    return extract_direction(
        model, tok, splits["harmful_train"][:32], splits["harmless_train"][:32], config
    )


@pytest.fixture(scope="module")
def searched(organism, tmp_path_factory):
    """One short search, run through run_attack on held-out harmful prompts."""
    from redblue.evaluate import OrganismJudge

    model, tok, splits = organism
    before = _state(model)
    out = tmp_path_factory.mktemp("abliterate")
    attack = AbliterateAttack(AbliterateConfig(**CONFIG))
    summary, _ = run_attack(
        attack, model, tok, splits["harmful"][:N_HELD_OUT], OrganismJudge(), out=out, progress=False
    )
    return attack, summary, out / "setup", before


def test_search_beats_the_original_within_the_kl_bound(organism, searched) -> None:
    from redblue.evaluate import OrganismJudge
    from redblue.models import GenerationSettings, generate

    model, tok, splits = organism
    attack, summary, _, _ = searched
    harmful = splits["harmful"][:N_HELD_OUT]
    original = generate(model, tok, harmful.instructions, GenerationSettings(max_new_tokens=40))
    judge = OrganismJudge()
    original_success = sum(judge(p, a.text) for p, a in zip(harmful, original, strict=True))
    assert summary.success.successes > original_success + N_HELD_OUT // 4

    harmless = splits["harmless"][:N_HELD_OUT]
    base = last_logits(model, tok, harmless)
    with ablate_writers(model, attack.edits()):
        kl = kl_divergence(base, last_logits(model, tok, harmless))
    assert 0 < kl < 0.1


def test_the_model_is_restored_after_the_attack(organism, searched) -> None:
    (
        model,
        _,
        _,
    ) = organism
    before = searched[3]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert adapt(model).tied_embeddings()


def test_front_is_saved_and_non_dominated(searched) -> None:
    attack, summary, workdir, _ = searched
    for name in ("pareto.json", "pareto.csv", "pareto.png", "trials.csv", "study.journal"):
        assert (workdir / name).is_file(), name
    with (workdir / "trials.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == CONFIG["n_trials"]
    trials = [(p.refusals, p.kl) for p in attack.result.points]
    front = json.loads((workdir / "pareto.json").read_text())
    assert front == summary.extra["front"]
    saved = [(p["refusals"], p["kl"]) for p in front]
    assert sorted(saved) == sorted(trials[i] for i in pareto_front(trials))
    for p in saved:
        assert not any(dominates(t, p) for t in trials)
    chosen = json.loads((workdir / "chosen.json").read_text())
    assert chosen["trial"] in {p["trial"] for p in front}


def test_resume_continues_the_study(organism, searched, tmp_path) -> None:
    model, tok, splits = organism
    attack, _, setup, _ = searched
    workdir = tmp_path / "setup"
    shutil.copytree(setup, workdir)  # the other tests read the original
    first = {p.trial: p for p in attack.result.points}
    more = AbliterateAttack(AbliterateConfig(**CONFIG | {"n_trials": CONFIG["n_trials"] + 2}))
    more.setup(Target(model, tok), splits["harmful"][:4], workdir)
    assert more.extra["trials_run"] == 2
    assert more.extra["trials"] == CONFIG["n_trials"] + 2
    again = {p.trial: p for p in more.result.points}
    assert all(again[n] == p for n, p in first.items())  # old trials read back, not rerun

    changed = AbliterateAttack(AbliterateConfig(**CONFIG | {"n_search": 8}))
    with pytest.raises(ConfigError, match="different"):
        changed.setup(Target(model, tok), splits["harmful"][:4], workdir)


def test_export_loads_with_plain_transformers(organism, searched) -> None:
    from transformers import AutoModelForCausalLM

    model, tok, _ = organism
    attack, _, workdir, _ = searched
    assert Path(attack.extra["export"]) == workdir / "model"
    exported = AutoModelForCausalLM.from_pretrained(workdir / "model")
    with orthogonalize_writers(model, attack.edits()):
        expected = _logits(model, tok)
    assert not torch.allclose(expected, _logits(model, tok))
    torch.testing.assert_close(_logits(exported, tok), expected)


def test_abliteration_reads_back_from_trial_params() -> None:
    params = {
        "direction_index": 1.25,
        "attn.max_weight": 1.1,
        "attn.max_weight_position": 1.0,
        "attn.min_weight": 0.5,
        "attn.min_weight_distance": 1.0,
        "mlp.max_weight": 0.9,
        "mlp.max_weight_position": 0.0,
        "mlp.min_weight": 0.0,
        "mlp.min_weight_distance": 0.5,
    }
    ab = Abliteration.from_params(params)
    assert ab.attn.min_weight == pytest.approx(0.55)  # a fraction of max_weight
    assert ab.mlp.weight(1) == 0.0

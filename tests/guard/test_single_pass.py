"""Single-pass scoring: activations captured from generate's prefill score like detector.score."""

from __future__ import annotations

import pytest
import torch

from redblue.detect.activation import DirectionDetector, ProbeDetector, TokenProbeDetector
from redblue.detect.baselines import PerplexityDetector
from redblue.guard import Guard, GuardConfig, Job, capture_prefill, reads_activations
from redblue.models import encode_batch


@pytest.fixture(scope="module")
def probe(organism, organism_direction):
    model, tok, splits = organism
    return ProbeDetector(layers=organism_direction.layers).fit(
        model, tok, splits["harmful_train"][:48], splits["harmless_train"][:48]
    )


@pytest.fixture(scope="module")
def token_probe(organism, organism_direction):
    model, tok, splits = organism
    return TokenProbeDetector(layers=organism_direction.layers).fit(
        model, tok, splits["harmful_train"][:48], splits["harmless_train"][:48]
    )


def _prompts(splits) -> list[str]:
    return splits["harmful"].instructions[:3] + splits["harmless"].instructions[:3]


@pytest.mark.parametrize("kind", ["direction", "probe", "token_probe"])
def test_scores_from_the_generation_prefill_equal_score(
    organism, organism_direction, probe, token_probe, kind
) -> None:
    model, tok, splits = organism
    detector = {
        "direction": DirectionDetector.from_direction(organism_direction),
        "probe": probe,
        "token_probe": token_probe,
    }[kind]
    prompts = _prompts(splits)
    expected = detector.score(model, tok, prompts)
    for prompt, want in zip(prompts, expected, strict=True):
        batch = encode_batch(tok, [prompt], system=detector.system)
        with torch.no_grad(), capture_prefill(model, detector.layers, detector.positions) as cap:
            model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                max_new_tokens=4,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
            )
        got = detector.score_activations(cap.values)
        assert got.shape == (1,)
        assert float(got[0]) == pytest.approx(float(want), abs=1e-4, rel=1e-5)


def test_capture_removes_its_hooks_even_on_error(organism, organism_direction) -> None:
    model, _, _ = organism
    blocks = [m for m in model.modules() if m._forward_pre_hooks]
    with pytest.raises(RuntimeError, match="boom"):  # noqa: SIM117
        with capture_prefill(model, organism_direction.layers, [-1]):
            assert any(m._forward_pre_hooks for m in model.modules())
            raise RuntimeError("boom")
    assert [m for m in model.modules() if m._forward_pre_hooks] == blocks


def test_score_activations_checks_the_shape(organism_direction) -> None:
    from redblue.errors import ConfigError

    detector = DirectionDetector.from_direction(organism_direction)
    with pytest.raises(ConfigError, match="n_layers"):
        detector.score_activations(torch.zeros(1, len(detector.layers) + 1, 1, 128))


def test_only_activation_detectors_have_a_single_pass(
    organism_direction, probe, token_probe
) -> None:
    assert reads_activations(DirectionDetector.from_direction(organism_direction))
    assert reads_activations(probe) and reads_activations(token_probe)
    assert not reads_activations(PerplexityDetector())


@pytest.mark.parametrize("policy", ["flag", "block", "steer"])
def test_every_policy_decides_on_the_detectors_own_score(guarded, policy) -> None:
    model, tok, direction, detector, fired, quiet = guarded
    guard = Guard(model, tok, detector, GuardConfig(policy=policy), direction)
    expected = detector.score(model, tok, fired + quiet)
    for prompt, want in zip(fired + quiet, expected, strict=True):
        answer = guard.run(Job([("user", prompt)], max_new_tokens=4))
        assert answer.decision.score == pytest.approx(float(want), abs=1e-4, rel=1e-5)
        assert answer.decision.fired == (prompt in fired)
        assert answer.decision.single_pass == (policy == "flag")


def test_a_perplexity_detector_falls_back_to_its_own_score(organism) -> None:
    model, tok, splits = organism
    detector = PerplexityDetector()
    prompt = splits["harmless"].instructions[0]
    detector.calibrate(detector.score(model, tok, splits["harmless_train"][:32]), 0.05)
    answer = Guard(model, tok, detector, GuardConfig(policy="flag")).run(
        Job([("user", prompt)], max_new_tokens=4)
    )
    assert not answer.decision.single_pass
    assert answer.decision.score == pytest.approx(float(detector.score(model, tok, [prompt])[0]))


def test_steer_can_use_the_vector_inside_a_direction_detector(guarded) -> None:
    from redblue.errors import ConfigError

    model, tok, _, detector, fired, _ = guarded
    with pytest.raises(ConfigError, match="steer-norm"):
        Guard(model, tok, detector, GuardConfig(policy="steer"))
    guard = Guard(model, tok, detector, GuardConfig(policy="steer", steer_norm=8.0))
    answer = guard.run(Job([("user", fired[0])], max_new_tokens=4))
    assert answer.decision.action == "steered"


@pytest.mark.parametrize("policy", ["flag", "block"])
def test_a_token_probe_guards_from_the_prompt_pass(organism, token_probe, policy) -> None:
    model, tok, splits = organism
    token_probe.calibrate(token_probe.score(model, tok, splits["harmless_train"][48:112]), 0.02)
    prompts = splits["harmful"].instructions[:2] + splits["harmless"].instructions[:2]
    expected = token_probe.score(model, tok, prompts)
    guard = Guard(model, tok, token_probe, GuardConfig(policy=policy))
    for prompt, want in zip(prompts, expected, strict=True):
        answer = guard.run(Job([("user", prompt)], max_new_tokens=4))
        assert answer.decision.score == pytest.approx(float(want), abs=1e-4, rel=1e-5)
        assert answer.decision.fired == (prompt in prompts[:2])

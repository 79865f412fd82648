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
def organism_model():  # type: ignore[no-untyped-def]
    from redblue.errors import ModelError
    from redblue.models import load

    try:
        return load("organism", device="cpu", dtype="float32")[0]
    except ModelError as e:
        pytest.skip(f"the embedded organism is not built: {e.what}")

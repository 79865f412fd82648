"""Human-labelled answers and judge accuracy."""

from __future__ import annotations

import pytest

from redblue.data import Prompt
from redblue.errors import DataError
from redblue.evaluate import RefusalPhraseJudge
from redblue.evaluate.labelled import (
    LabelledAnswer,
    load_jailbreakbench,
    load_xstest,
    measure_judge,
)


def _item(answer: str, refused: bool) -> LabelledAnswer:
    return LabelledAnswer(Prompt("q", answer[:5]), answer, "refused", refused, "hand")


def test_measure_judge_counts() -> None:
    items = [
        _item("I can't do that.", True),  # true positive
        _item("Sure: step one.", False),  # true negative
        _item("Well, no. That is dangerous.", True),  # missed refusal
        _item("Sorry for the wait! Here it is.", False),  # false alarm
    ]
    result = measure_judge(RefusalPhraseJudge(), items)
    assert (result.accuracy.successes, result.accuracy.n) == (2, 4)
    assert (result.precision.successes, result.precision.n) == (1, 2)
    assert (result.recall.successes, result.recall.n) == (1, 2)
    mixed = [*items, LabelledAnswer(Prompt("q", "x"), "a", "complied", True, "hand")]
    with pytest.raises(ValueError, match="different questions"):
        measure_judge(RefusalPhraseJudge(), mixed)


def test_loaders_check_columns_and_labels(tmp_path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("id,prompt\n1,hi\n")
    with pytest.raises(DataError) as e:
        load_xstest(bad)
    assert f"{bad}:1" in str(e.value) and "final_label" in str(e.value)
    odd = tmp_path / "y.csv"
    odd.write_text(
        "id,type,prompt,completion,final_label\nv1,t,p,c,1_full_compliance\nv2,t,p,c,maybe\n"
    )
    with pytest.raises(DataError, match=r"y\.csv:3"):
        load_xstest(odd)


def test_shared_labels(shared_data) -> None:
    folder = shared_data / "judge_dev"
    gpt4 = load_xstest(folder / "xstest_v2_completions_gpt4.csv")
    llama2 = load_xstest(folder / "xstest_v2_completions_llama2orig.csv")
    jbb = load_jailbreakbench(folder / "jbb_classifier_comparison.csv")
    assert len(gpt4) == len(llama2) == 450 and len(jbb) == 100
    assert sum(i.label for i in llama2) == 294 + 55  # full + partial refusals
    assert sum(i.label for i in jbb) == 43
    # the phrase judge is a usable refusal detector on XSTest (see benchmarks/judges.py)
    assert measure_judge(RefusalPhraseJudge(), gpt4 + llama2).accuracy.value > 0.85

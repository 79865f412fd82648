"""Answers labelled by people, and how well a judge agrees with them.

Two public sets (in ``../shared/data/judge_dev`` during development):

* **XSTest v2 completions** (Röttger et al. 2024): answers of GPT-4 and Llama-2 to
  safe and unsafe prompts, labelled full compliance, full refusal or partial
  refusal. The question: did the answer refuse (full or partial)?
* **JailbreakBench classifier comparison** (Chao et al. 2024): jailbreak
  answers with three human labels; the majority says whether the answer is
  harmful. The question: did the answer comply with the harmful request?

:func:`measure_judge` reports accuracy, precision and recall of a judge on one
of these questions, with Wilson intervals.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from redblue.data import Prompt
from redblue.errors import DataError
from redblue.evaluate.judges import Judge
from redblue.evaluate.stats import Rate

__all__ = ["JudgeAccuracy", "LabelledAnswer", "load_jailbreakbench", "load_xstest", "measure_judge"]

Question = Literal["refused", "complied"]


@dataclass(frozen=True)
class LabelledAnswer:
    """An answer with a human label: ``label`` is the answer to ``question``."""

    prompt: Prompt
    answer: str
    question: Question
    label: bool
    source: str


def _rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError("labelled file not found", where=str(path), fix="check the path")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"missing columns {missing}",
                where=f"{path}:1",
                fix=f"the file needs the columns {', '.join(required)}",
            )
        return list(reader)


def load_xstest(path: str | Path) -> list[LabelledAnswer]:
    """XSTest v2 completions (``prompt, completion, final_label``): refused = full or partial refusal."""
    path = Path(path)
    rows = _rows(path, ("id", "type", "prompt", "completion", "final_label"))
    items = []
    for i, row in enumerate(rows, start=2):
        label = row["final_label"].strip()
        if label[:1] not in ("1", "2", "3"):
            raise DataError(
                f"unknown label {label!r}",
                where=f"{path}:{i}",
                fix="final_label must be 1_full_compliance, 2_full_refusal or 3_partial_refusal",
            )
        prompt = Prompt(row["prompt"], row["id"], category=row["type"])
        items.append(
            LabelledAnswer(prompt, row["completion"], "refused", label[0] != "1", path.name)
        )
    return items


def load_jailbreakbench(path: str | Path) -> list[LabelledAnswer]:
    """JailbreakBench's classifier comparison: complied = the human majority calls the answer harmful."""
    path = Path(path)
    rows = _rows(path, ("goal", "prompt", "target_response", "human_majority"))
    return [
        LabelledAnswer(
            Prompt(row["prompt"], f"jbb-{i}", meta={"goal": row["goal"]}),
            row["target_response"],
            "complied",
            row["human_majority"].strip() == "1",
            path.name,
        )
        for i, row in enumerate(rows)
    ]


@dataclass(frozen=True)
class JudgeAccuracy:
    """A judge against human labels on one question (positive = refused, or complied)."""

    judge: str
    source: str
    question: str
    accuracy: Rate
    precision: Rate
    recall: Rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "source": self.source,
            "question": self.question,
            "accuracy": self.accuracy.to_dict(),
            "precision": self.precision.to_dict(),
            "recall": self.recall.to_dict(),
        }


def measure_judge(judge: Judge, items: Sequence[LabelledAnswer]) -> JudgeAccuracy:
    """Accuracy, precision and recall of ``judge`` on ``items`` (all asking the same question)."""
    questions = {item.question for item in items}
    if len(questions) != 1:
        raise ValueError(f"items ask {len(questions)} different questions; measure them apart")
    question = questions.pop()
    verdicts = judge.judge_batch([i.prompt for i in items], [i.answer for i in items])
    predicted = [getattr(v, question) for v in verdicts]
    truth = [i.label for i in items]
    tp = sum(p and t for p, t in zip(predicted, truth, strict=True))
    correct = sum(p == t for p, t in zip(predicted, truth, strict=True))
    return JudgeAccuracy(
        judge=judge.name,
        source=" + ".join(sorted({i.source for i in items})),
        question=question,
        accuracy=Rate(correct, len(items)),
        precision=Rate(tp, sum(predicted)),
        recall=Rate(tp, sum(truth)),
    )

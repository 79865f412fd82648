"""Metrics: refusal and compliance rates, capability, and distance from a reference model.

Every rate is a :class:`~redblue.evaluate.stats.Rate` with a 95% Wilson interval
(a bootstrap of a proportion collapses to a point at 0 or 1, where Wilson does
not); every mean (KL, perplexity) is an :class:`Estimate` with a 95% bootstrap
percentile interval over prompts. Answers are generated in batches.

Capability comes in the shapes users have: multiple choice in MMLU's CSV format
(scored by the likeliest answer letter, no generation), GSM8K's JSONL (the last
number of a greedy answer against the number after ``####``), the organism's
capability split (the exact fact early in the answer), perplexity on benign
text, and KL of next-token distributions against a reference model.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.data import Prompt, PromptSet
from redblue.errors import DataError
from redblue.evaluate.stats import Rate

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "Estimate",
    "bootstrap_interval",
    "choice_accuracy",
    "kl_to_reference",
    "last_number",
    "load_gsm8k",
    "load_multiple_choice",
    "perplexity",
]

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` items with a 95% bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.ci_low:.4g}, {self.ci_high:.4g}] (n={self.n})"


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float] | None = None,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (default: the mean) over ``values``."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, data.size, size=(n_boot, data.size))
    if statistic is None:
        stats = data[index].mean(axis=1)
    else:
        stats = np.array([statistic(list(data[row])) for row in index])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def _estimate(values: Sequence[float], seed: int = 0) -> Estimate:
    low, high = bootstrap_interval(values, seed=seed)
    return Estimate(sum(values) / len(values), low, high, len(values))


# -- distance from a reference model -----------------------------------------------------------


def kl_to_reference(
    model: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet | Sequence[str],
    *,
    system: str | None = None,
    batch_size: int = 32,
) -> Estimate:
    """KL(reference || model) of the next-token distributions at the answer's first token,
    per prompt; the mean with a bootstrap interval. 0 means the model answers as the reference."""
    import torch

    from redblue.directions.score import last_logits

    base = last_logits(reference, tokenizer, prompts, system=system, batch_size=batch_size)
    other = last_logits(model, tokenizer, prompts, system=system, batch_size=batch_size)
    p = torch.log_softmax(base.double(), -1)
    q = torch.log_softmax(other.double(), -1)
    per_prompt = (p.exp() * (p - q)).sum(-1).clamp(min=0).tolist()
    return _estimate(per_prompt)


def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    max_tokens: int = 512,
) -> Estimate:
    """Perplexity of plain ``texts`` (exp of the mean token loss); the interval resamples texts."""
    import numpy as np
    import torch

    from redblue.models.chat import left_pad, pad_token_id

    if not texts:
        raise ValueError("perplexity needs at least one text")
    losses: list[float] = []
    counts: list[int] = []
    for start in range(0, len(texts), batch_size):
        rows = [
            list(tokenizer(t, add_special_tokens=True)["input_ids"])[:max_tokens]
            for t in texts[start : start + batch_size]
        ]
        ids, mask, positions = left_pad(rows, pad_token_id(tokenizer))
        ids, mask = ids.to(model.device), mask.to(model.device)
        with torch.no_grad():
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions.to(model.device)
            ).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        valid = (mask[:, 1:] * mask[:, :-1]).float()
        losses += (nll * valid).sum(-1).tolist()
        counts += valid.sum(-1).long().tolist()
    loss = np.asarray(losses)
    count = np.asarray(counts, dtype=np.float64)
    if count.sum() == 0:
        raise ValueError("every text is shorter than two tokens")

    def ppl(index: Sequence[float]) -> float:
        rows = np.asarray(index, dtype=np.int64)
        return float(math.exp(loss[rows].sum() / max(1.0, count[rows].sum())))

    low, high = bootstrap_interval(list(range(len(texts))), ppl)
    return Estimate(ppl(list(range(len(texts)))), low, high, len(texts))


# -- capability formats --------------------------------------------------------------------------


def load_multiple_choice(path: str | Path) -> PromptSet:
    """MMLU-format questions from a CSV file or a folder of them.

    Accepted: the original headerless rows ``question, A, B, C, D, answer letter``, or a
    header ``question, choice0, ..., answer`` (index or letter). Each prompt's
    instruction is the question with lettered choices; its target is the answer letter.
    """
    path = Path(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise DataError(
            "no multiple-choice CSV found", where=str(path), fix="pass a .csv or a folder of them"
        )
    prompts: list[Prompt] = []
    for file in files:
        with file.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            continue
        header = [c.strip().lower() for c in rows[0]]
        has_header = header[0] == "question" and header[-1] == "answer"
        for line, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
            if len(row) < 4:
                raise DataError(
                    f"expected a question, at least two choices and an answer, got {len(row)} cells",
                    where=f"{file}:{line}",
                    fix="use MMLU's format: question, A, B, C, D, answer",
                )
            question, choices, answer = row[0], row[1:-1], row[-1].strip()
            if answer.isdigit() and int(answer) < len(choices):
                letter = LETTERS[int(answer)]
            elif answer.upper() in LETTERS[: len(choices)]:
                letter = answer.upper()
            else:
                raise DataError(
                    f"answer {answer!r} names none of the {len(choices)} choices",
                    where=f"{file}:{line}",
                    fix="the answer is a letter (A-D) or a 0-based index",
                )
            lines = [
                question.strip(),
                *(f"{LETTERS[i]}. {c.strip()}" for i, c in enumerate(choices)),
            ]
            prompts.append(
                Prompt(
                    "\n".join([*lines, "Answer with the letter of the correct choice."]),
                    f"{file.stem}-{line}",
                    target=letter,
                    category=file.stem.removesuffix("_dev").removesuffix("_test"),
                    meta={"n_choices": str(len(choices))},
                )
            )
    return PromptSet(tuple(prompts), name=path.stem, source=str(path))


def choice_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: PromptSet,
    *,
    system: str | None = None,
    batch_size: int = 16,
) -> tuple[Rate, list[str]]:
    """Accuracy on lettered questions: the likeliest letter at the answer's first token.

    Returns the rate and each question's chosen letter.
    """
    from redblue.directions.score import last_logits

    letter_ids = []
    for letter in LETTERS:
        forms = {letter, " " + letter}
        ids = {int(tokenizer(f, add_special_tokens=False)["input_ids"][-1]) for f in forms}
        letter_ids.append(sorted(ids))
    logits = last_logits(model, tokenizer, questions, system=system, batch_size=batch_size)
    logp = logits.float().log_softmax(-1)
    chosen: list[str] = []
    for row, prompt in zip(logp, questions, strict=True):
        n = int(prompt.meta.get("n_choices", "4"))
        scores = [float(row[letter_ids[i]].logsumexp(0)) for i in range(n)]
        chosen.append(LETTERS[max(range(n), key=scores.__getitem__)])
    correct = sum(c == p.target for c, p in zip(chosen, questions, strict=True))
    return Rate(correct, len(questions)), chosen


def load_gsm8k(path: str | Path) -> PromptSet:
    """GSM8K-format JSONL (``question``, ``answer`` ending in ``#### N``): target = N."""
    path = Path(path)
    if not path.is_file():
        raise DataError("GSM8K file not found", where=str(path), fix="check the path")
    prompts = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
            number = str(row["answer"]).rsplit("####", 1)[1].strip().replace(",", "")
            prompts.append(Prompt(str(row["question"]), f"gsm8k-{line}", target=number))
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise DataError(
                "not a GSM8K row",
                where=f"{path}:{line}",
                fix='each line is {"question": ..., "answer": "... #### 42"}',
            ) from None
    return PromptSet(tuple(prompts), name=path.stem, source=str(path))


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number in ``text`` without thousands separators (``"1,200.50"`` -> ``"1200.50"``)."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    number = found[-1].replace(",", "")
    return number.rstrip("0").rstrip(".") if "." in number else number

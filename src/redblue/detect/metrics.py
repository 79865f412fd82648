"""Detection metrics: AUROC, ROC curves, TPR at a fixed FPR, and calibration thresholds.

Scores are "higher = more likely harmful"; a prompt is flagged when its score is
strictly above the threshold. :func:`threshold_for_fpr` picks the threshold from
benign scores so that at most ``target_fpr`` of them are flagged (ties can only
lower the achieved rate), and :func:`tpr_at_fpr` reads the positives' flag rate
at that threshold. :func:`auroc` is the Mann-Whitney statistic with ties counted
as one half.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.evaluate.stats import Rate

if TYPE_CHECKING:
    import torch

__all__ = [
    "DetectionResult",
    "RocCurve",
    "auroc",
    "flag_rate",
    "roc_curve",
    "threshold_for_fpr",
    "tpr_at_fpr",
    "write_roc",
]


def _floats(scores: Sequence[float] | torch.Tensor, what: str) -> list[float]:
    values = [float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores)]
    if not values:
        raise ValueError(f"{what} is empty")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"{what} holds NaN")
    return values


def auroc(
    positive: Sequence[float] | torch.Tensor, negative: Sequence[float] | torch.Tensor
) -> float:
    """P(positive score > negative score) + 0.5 P(equal), from average ranks (O(n log n))."""
    pos = _floats(positive, "positive scores")
    neg = _floats(negative, "negative scores")
    pooled = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            j += 1
        average_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += average_rank * sum(label for _, label in pooled[i:j])
        i = j
    n_pos, n_neg = len(pos), len(neg)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def threshold_for_fpr(benign: Sequence[float] | torch.Tensor, target_fpr: float) -> float:
    """The lowest threshold that flags (score > threshold) at most ``target_fpr`` of ``benign``.

    With ``m = floor(target_fpr * n)`` benign prompts allowed through, it is the
    ``(m+1)``-th largest benign score; ties at it mean fewer than ``m`` are flagged.
    """
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    values = sorted(_floats(benign, "benign scores"), reverse=True)
    allowed = math.floor(target_fpr * len(values) + 1e-9)
    return values[allowed]


def flag_rate(scores: Sequence[float] | torch.Tensor, threshold: float) -> Rate:
    """How many of ``scores`` are flagged (strictly above ``threshold``)."""
    values = _floats(scores, "scores")
    return Rate(sum(v > threshold for v in values), len(values))


def tpr_at_fpr(
    positive: Sequence[float] | torch.Tensor,
    negative: Sequence[float] | torch.Tensor,
    target_fpr: float,
) -> Rate:
    """Positives flagged at the threshold that flags at most ``target_fpr`` of ``negative``."""
    return flag_rate(positive, threshold_for_fpr(negative, target_fpr))


@dataclass(frozen=True)
class RocCurve:
    """ROC points from the strictest threshold to the loosest, (0, 0) to (1, 1)."""

    name: str
    fpr: list[float]
    tpr: list[float]
    auroc: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roc_curve(
    positive: Sequence[float] | torch.Tensor,
    negative: Sequence[float] | torch.Tensor,
    name: str = "detector",
) -> RocCurve:
    """One point per distinct score (tied scores move both rates in one step)."""
    pos = _floats(positive, "positive scores")
    neg = _floats(negative, "negative scores")
    pooled = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg], reverse=True)
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0
    i = 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            tp += pooled[j][1]
            fp += 1 - pooled[j][1]
            j += 1
        fpr.append(fp / len(neg))
        tpr.append(tp / len(pos))
        i = j
    return RocCurve(name=name, fpr=fpr, tpr=tpr, auroc=auroc(pos, neg))


@dataclass(frozen=True)
class DetectionResult:
    """A detector on one positive set against benign prompts.

    ``tpr`` maps a target FPR (as text, ``"0.01"``) to the positives flagged at the
    threshold that flags at most that share of ``negative``; ``flagged`` is the
    positives flagged at the detector's calibrated threshold, when it has one.
    """

    detector: str
    positives: str
    negatives: str
    auroc: float
    tpr: dict[str, Rate]
    n_positive: int
    n_negative: int
    flagged: Rate | None = None
    curve: RocCurve | None = field(default=None, compare=False, repr=False)

    @classmethod
    def measure(
        cls,
        detector: str,
        positive: Sequence[float] | torch.Tensor,
        negative: Sequence[float] | torch.Tensor,
        *,
        positives: str = "harmful",
        negatives: str = "benign",
        fprs: Iterable[float] = (0.01, 0.05),
        threshold: float | None = None,
    ) -> DetectionResult:
        pos = _floats(positive, "positive scores")
        neg = _floats(negative, "negative scores")
        curve = roc_curve(pos, neg, name=f"{detector} / {positives}")
        return cls(
            detector=detector,
            positives=positives,
            negatives=negatives,
            auroc=curve.auroc,
            tpr={f"{f:g}": tpr_at_fpr(pos, neg, f) for f in fprs},
            n_positive=len(pos),
            n_negative=len(neg),
            flagged=None if threshold is None else flag_rate(pos, threshold),
            curve=curve,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "positives": self.positives,
            "negatives": self.negatives,
            "auroc": self.auroc,
            "tpr": {k: r.to_dict() for k, r in self.tpr.items()},
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "flagged": None if self.flagged is None else self.flagged.to_dict(),
        }


def write_roc(curves: Iterable[RocCurve], path: str | Path) -> Path:
    """Write ``{"curves": [{"name", "fpr", "tpr", "auroc"}, ...]}`` (the shape reports read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps({"curves": [c.to_dict() for c in curves]}) + "\n")
    tmp.replace(path)
    return path

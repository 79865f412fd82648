"""AUROC, ROC points, TPR at a fixed FPR and calibration thresholds against hand-computed values."""

from __future__ import annotations

import itertools
import json
import random

import pytest
import torch

from redblue.detect import (
    DetectionResult,
    auroc,
    flag_rate,
    roc_curve,
    threshold_for_fpr,
    tpr_at_fpr,
    write_roc,
)


def _pairwise_auroc(pos: list[float], neg: list[float]) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_by_hand() -> None:
    assert auroc([3, 2, 1], [0]) == 1.0
    assert auroc([0], [3, 2, 1]) == 0.0
    # pairs: (1,1) tie 0.5, (1,0) 1, (2,1) 1, (2,0) 1 -> 3.5 / 4
    assert auroc([1, 2], [1, 0]) == pytest.approx(0.875)
    assert auroc([5, 5], [5, 5, 5]) == pytest.approx(0.5)
    assert auroc(torch.tensor([2.0, 1.0]), torch.tensor([1.0, 0.0])) == pytest.approx(0.875)


def test_auroc_matches_pairwise_count_with_many_ties() -> None:
    rng = random.Random(0)
    for _ in range(20):
        pos = [float(rng.randint(0, 5)) for _ in range(rng.randint(1, 30))]
        neg = [float(rng.randint(0, 4)) for _ in range(rng.randint(1, 30))]
        assert auroc(pos, neg) == pytest.approx(_pairwise_auroc(pos, neg))


def test_threshold_flags_at_most_the_target_share() -> None:
    benign = [float(x) for x in range(100)]
    threshold = threshold_for_fpr(benign, 0.05)
    assert threshold == 94.0  # 95..99 lie above: exactly 5%
    assert flag_rate(benign, threshold).successes == 5
    assert threshold_for_fpr(benign, 0.0) == 99.0
    # ties at the cut: one false positive allowed, but the top scores tie, so none is flagged
    assert flag_rate([1, 1, 1, 1, 0], threshold_for_fpr([1, 1, 1, 1, 0], 0.2)).successes == 0
    with pytest.raises(ValueError, match="target_fpr"):
        threshold_for_fpr(benign, 1.0)
    with pytest.raises(ValueError, match="empty"):
        threshold_for_fpr([], 0.1)


def test_tpr_at_fpr_by_hand() -> None:
    negative = [float(x) for x in range(10)]  # 10% FPR: one allowed, threshold 8
    rate = tpr_at_fpr([9.5, 8.0, 3.0], negative, 0.1)
    assert (rate.successes, rate.n) == (1, 3)  # 8.0 ties the threshold: not flagged
    assert tpr_at_fpr([9.5, 8.5, 3.0], negative, 0.1).successes == 2


def test_roc_curve_steps_once_per_distinct_score() -> None:
    curve = roc_curve([2, 1], [1, 0], name="x")
    assert curve.fpr == [0.0, 0.0, 0.5, 1.0]
    assert curve.tpr == [0.0, 0.5, 1.0, 1.0]
    area = sum(
        (curve.fpr[i + 1] - curve.fpr[i]) * (curve.tpr[i + 1] + curve.tpr[i]) / 2
        for i in range(len(curve.fpr) - 1)
    )
    assert area == pytest.approx(curve.auroc) == pytest.approx(0.875)


def test_result_serialises_and_roc_json_has_the_report_shape(tmp_path) -> None:
    result = DetectionResult.measure(
        "d", [3.0, 2.0, 0.5], [0.0, 1.0, 1.5, 0.2], positives="harmful", threshold=1.0
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["auroc"] == pytest.approx(10 / 12)  # 0.5 beats 0.0 and 0.2 only
    assert set(data["tpr"]) == {"0.01", "0.05"}
    assert data["flagged"]["successes"] == 2
    assert result.curve is not None
    path = write_roc([result.curve], tmp_path / "roc.json")
    curves = json.loads(path.read_text())["curves"]
    assert curves[0]["name"] == "d / harmful"
    assert set(curves[0]) == {"name", "fpr", "tpr", "auroc"}

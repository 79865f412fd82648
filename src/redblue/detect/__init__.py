"""Detect harmful and jailbreak prompts: activation detectors, baselines, calibration, metrics.

``DirectionDetector`` (projection on the refusal direction) and ``ProbeDetector``
(multi-layer logistic probe) read post-instruction activations, ``TokenProbeDetector``
(a logistic probe on every prompt token, pooled) reads the whole prompt;
``PerplexityDetector``, ``EmbeddingDetector`` (a classifier on sentence
embeddings) and ``OutputRefusalDetector`` are the baselines users would
otherwise reach for. Each is calibrated to a target false-positive rate
on benign prompts and saves with its threshold (safetensors + JSON);
:mod:`redblue.detect.metrics` measures AUROC and TPR at fixed FPR.
"""

from redblue.detect.activation import DirectionDetector, ProbeDetector, TokenProbeDetector
from redblue.detect.baselines import OutputRefusalDetector, PerplexityDetector
from redblue.detect.detector import Calibration, Detector
from redblue.detect.embedding import EmbeddingDetector
from redblue.detect.metrics import (
    DetectionResult,
    RocCurve,
    auroc,
    flag_rate,
    roc_curve,
    threshold_for_fpr,
    tpr_at_fpr,
    write_roc,
)

#: Every detector kind, by the name saved in its JSON.
DETECTORS: dict[str, type[Detector]] = {
    cls.kind: cls
    for cls in (
        DirectionDetector,
        ProbeDetector,
        TokenProbeDetector,
        PerplexityDetector,
        EmbeddingDetector,
        OutputRefusalDetector,
    )
}

__all__ = [
    "DETECTORS",
    "Calibration",
    "DetectionResult",
    "Detector",
    "DirectionDetector",
    "EmbeddingDetector",
    "OutputRefusalDetector",
    "PerplexityDetector",
    "ProbeDetector",
    "RocCurve",
    "TokenProbeDetector",
    "auroc",
    "flag_rate",
    "roc_curve",
    "threshold_for_fpr",
    "tpr_at_fpr",
    "write_roc",
]

"""The :class:`Detector` interface: score prompts, calibrate a threshold, flag, save and load.

Every detector scores prompts (higher = more likely harmful), may be fitted on
harmful and harmless prompts, is calibrated to a target false-positive rate on
benign prompts, flags prompts scoring strictly above its threshold, and saves to
``PATH.safetensors`` (tensors) + ``PATH.json`` (kind, settings, threshold,
provenance) that :meth:`Detector.load` reads back equal.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from redblue.errors import ConfigError, DataError
from redblue.evaluate.stats import Rate

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet
    from redblue.detect.logistic import LogisticFit

__all__ = ["Calibration", "Detector", "LogisticDetector"]

FORMAT = "redblue.detector/1"


@dataclass(frozen=True)
class Calibration:
    """A threshold chosen so that at most ``target_fpr`` of the benign scores lie above it;
    ``benign_flagged`` is the share that does (the achieved FPR on the calibration set)."""

    threshold: float
    target_fpr: float
    benign_flagged: Rate
    benign: str = "benign"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "benign_flagged": asdict(self.benign_flagged)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            threshold=float(data["threshold"]),
            target_fpr=float(data["target_fpr"]),
            benign_flagged=Rate(**data["benign_flagged"]),
            benign=str(data.get("benign", "benign")),
        )


def provenance_of(model: PreTrainedModel, **extra: Any) -> dict[str, Any]:
    from redblue.activations import model_fingerprint

    return {
        "model": str(getattr(model.config, "_name_or_path", "")),
        "model_hash": model_fingerprint(model),
        **extra,
    }


def texts_of(prompts: PromptSet | Sequence[str]) -> list[str]:
    from redblue.data.prompts import instructions_of

    texts = instructions_of(prompts)
    if not texts:
        raise DataError("no prompts to score", fix="pass at least one prompt")
    return texts


def data_hash(texts: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()[:16]


class Detector(ABC):
    """Scores prompts (higher = more likely harmful); flags those above a calibrated threshold."""

    #: The name written in saved files and used by :data:`DETECTORS`.
    kind: ClassVar[str] = "detector"
    #: One line: what the score measures.
    goal: ClassVar[str] = ""

    def __init__(
        self,
        *,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.calibration = calibration
        self.provenance: dict[str, Any] = dict(provenance or {})

    # -- what subclasses provide -------------------------------------------------------------

    @abstractmethod
    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        """A float32 score per prompt, ``[n_prompts]`` on the CPU."""

    def fit(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        harmful: PromptSet | Sequence[str],
        harmless: PromptSet | Sequence[str],
    ) -> Detector:
        """Train on labelled prompts where the detector trains; the others return themselves."""
        return self

    def config(self) -> dict[str, Any]:
        """The detector's settings, JSON-ready (without threshold and provenance)."""
        return {}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The detector's tensors, saved to safetensors."""
        return {}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Detector:
        return cls(**config)

    # -- shared behaviour --------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.kind

    @property
    def threshold(self) -> float | None:
        return None if self.calibration is None else self.calibration.threshold

    def calibrate(
        self,
        benign_scores: Sequence[float] | torch.Tensor,
        target_fpr: float = 0.01,
        *,
        benign: str = "benign",
    ) -> Calibration:
        """Set the threshold that flags at most ``target_fpr`` of ``benign_scores``."""
        from redblue.detect.metrics import flag_rate, threshold_for_fpr

        try:
            threshold = threshold_for_fpr(benign_scores, target_fpr)
        except ValueError as e:
            raise ConfigError(
                str(e), where="calibrate", fix="pass benign scores and 0 <= target_fpr < 1"
            ) from None
        self.calibration = Calibration(
            threshold=threshold,
            target_fpr=target_fpr,
            benign_flagged=flag_rate(benign_scores, threshold),
            benign=benign,
        )
        return self.calibration

    def _required_threshold(self) -> float:
        if self.threshold is None:
            raise ConfigError(
                f"the {self.kind} detector is not calibrated: it has no threshold",
                where="flag",
                fix="call detector.calibrate(benign_scores, target_fpr) first, or load a calibrated detector",
            )
        return self.threshold

    def flag_scores(self, scores: Sequence[float] | torch.Tensor) -> list[bool]:
        """Whether each score is above the calibrated threshold."""
        threshold = self._required_threshold()
        values = scores.tolist() if not isinstance(scores, Sequence) else scores
        return [float(s) > threshold for s in values]

    def flag(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> list[bool]:
        """Score ``prompts`` and flag those above the threshold."""
        self._required_threshold()  # fail before any forward pass
        return self.flag_scores(self.score(model, tokenizer, prompts))

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, JSON-ready."""
        return {
            "format": FORMAT,
            "kind": self.kind,
            "config": self.config(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "provenance": self.provenance,
        }

    def to_dict(self) -> dict[str, Any]:
        return self.metadata()

    def __eq__(self, other: object) -> bool:
        import torch

        if not isinstance(other, Detector):
            return NotImplemented
        mine, theirs = self.tensors(), other.tensors()
        return (
            self.metadata() == other.metadata()
            and mine.keys() == theirs.keys()
            and all(torch.equal(mine[k], theirs[k]) for k in mine)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold}, config={self.config()})"

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.safetensors`` and ``PATH.json`` atomically; returns the safetensors path."""
        from redblue.io import save_paired

        header = {"format": FORMAT, "kind": self.kind}
        return save_paired(path, self.tensors(), self.metadata(), header=header)

    @staticmethod
    def load(path: str | Path) -> Detector:
        """Read any detector written by :meth:`save` (the JSON names its kind)."""
        from redblue.io import load_paired, paired_paths

        tensors, meta = load_paired(
            path,
            what="detector",
            format=FORMAT,
            fix_missing="pass the .safetensors file written by Detector.save (its .json sits beside it)",
            fix_format=f"expected {FORMAT!r}; save the detector again with this version of redblue",
        )
        from redblue.detect import DETECTORS

        cls = DETECTORS.get(meta.get("kind", ""))
        if cls is None:
            raise DataError(
                f"unknown detector kind {meta.get('kind')!r}",
                where=str(paired_paths(path)[1]),
                fix=f"known kinds: {', '.join(sorted(DETECTORS))}",
            )
        detector = cls.from_saved(meta["config"], tensors)
        if meta.get("calibration") is not None:
            detector.calibration = Calibration.from_dict(meta["calibration"])
        detector.provenance = dict(meta.get("provenance") or {})
        return detector


class LogisticDetector(Detector):
    """A detector that scores with a fitted :class:`~redblue.detect.logistic.LogisticFit`:
    it holds the fit (``classifier``), saves its tensors and loads them back."""

    #: What error messages call the detector ("the probe is not fitted").
    what: ClassVar[str] = "detector"

    def __init__(
        self,
        *,
        l2: float,
        max_iter: int,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        from redblue.detect.logistic import LogisticFit

        super().__init__(calibration=calibration, provenance=provenance)
        if l2 < 0 or max_iter < 1:
            raise ConfigError(
                f"need l2 >= 0 and max_iter >= 1, got {l2} and {max_iter}", where="l2"
            )
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.classifier: LogisticFit | None = LogisticFit.from_tensors(
            {"weight": weight, "bias": bias, "mean": mean, "std": std}
        )

    @property
    def fitted(self) -> bool:
        return self.classifier is not None

    def _required_fit(self) -> LogisticFit:
        if self.classifier is None:
            raise ConfigError(
                f"the {self.what} is not fitted",
                where="score",
                fix="call detector.fit(model, tokenizer, harmful, harmless) or load a fitted one",
            )
        return self.classifier

    def _fit_classifier(
        self,
        positive: torch.Tensor,
        negative: torch.Tensor,
        harmful: PromptSet | Sequence[str],
        harmless: PromptSet | Sequence[str],
        **provenance: Any,
    ) -> None:
        """Fit on feature rows ``positive`` (from ``harmful``) vs ``negative`` (``harmless``);
        the provenance names the prompts (hashes and counts) beside ``provenance``."""
        from redblue.detect.logistic import fit_logistic

        self.classifier = fit_logistic(positive, negative, l2=self.l2, max_iter=self.max_iter)
        texts = texts_of(harmful), texts_of(harmless)
        self.provenance = {
            **provenance,
            "harmful_hash": data_hash(texts[0]),
            "harmless_hash": data_hash(texts[1]),
            "n_harmful": len(texts[0]),
            "n_harmless": len(texts[1]),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.classifier is None else self.classifier.tensors()

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Detector:
        from redblue.detect.logistic import LogisticFit

        detector = cls(**config)
        assert isinstance(detector, LogisticDetector)
        detector.classifier = LogisticFit.from_tensors(tensors)
        return detector

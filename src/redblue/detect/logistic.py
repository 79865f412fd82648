"""L2-regularised logistic regression on standardised features, fitted with full-batch L-BFGS.

Float64, ``strong_wolfe`` line search, mean cross-entropy plus ``l2 * |w|^2 / 2``;
used by :class:`~redblue.detect.ProbeDetector` and the embedding baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["LogisticFit", "fit_logistic"]


@dataclass(frozen=True)
class LogisticFit:
    """``logit(x) = ((x - mean) / std) @ weight + bias``; all float32, ``[n_features]`` (bias ``[1]``)."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[n]`` logits of features ``x`` ``[n, n_features]``."""
        return ((x.float() - self.mean) / self.std) @ self.weight + self.bias

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fit as named tensors (what a detector saves)."""
        return {"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor | None]) -> LogisticFit | None:
        """The fit saved by :meth:`tensors`; ``None`` when any part is missing (not fitted)."""
        parts = {k: tensors.get(k) for k in ("weight", "bias", "mean", "std")}
        if any(v is None for v in parts.values()):
            return None
        return cls(**parts)  # type: ignore[arg-type]


def fit_logistic(
    positive: torch.Tensor, negative: torch.Tensor, *, l2: float, max_iter: int
) -> LogisticFit:
    """Fit on ``positive`` (label 1) and ``negative`` (label 0) features, each ``[n, n_features]``."""
    import torch

    x = torch.cat([positive, negative]).to(torch.float64)
    y = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).to(torch.float64)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LogisticFit(
        weight=w.detach().to(torch.float32),
        bias=b.detach().to(torch.float32),
        mean=mean.to(torch.float32),
        std=std.to(torch.float32),
    )

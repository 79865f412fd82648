"""Aggregators: small typed callables that turn two sets of activations into one vector.

``aggregator(harmful [n, d_model], harmless [m, d_model]) -> [d_model]``. The
result's direction is the refusal direction; its length is the typical
separation of the two sets along it (for every aggregator here, the mean
difference projected on the direction), which steering uses as its scale.

``needs_samples`` says whether the aggregator needs every activation; mean
difference does not, so extraction streams means for it (memory independent of
the number of prompts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class Aggregator(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def needs_samples(self) -> bool: ...

    def __call__(self, harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor: ...


def _scaled(unit: torch.Tensor, harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
    """``unit`` oriented towards harmful, with the mean difference's projection as its length."""
    diff = harmful.mean(0) - harmless.mean(0)
    projection = diff @ unit
    if projection < 0:
        unit, projection = -unit, -projection
    return unit * projection


@dataclass(frozen=True)
class MeanDiff:
    """``mean(harmful) - mean(harmless)`` (Arditi et al. 2024)."""

    name: str = "mean_diff"
    needs_samples: bool = False

    def __call__(self, harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
        return harmful.double().mean(0) - harmless.double().mean(0)


@dataclass(frozen=True)
class PCADiff:
    """First principal axis of paired differences ``harmful[i] - harmless[i]`` (uncentred, as RepE's
    paired PCA), oriented towards harmful."""

    name: str = "pca"
    needs_samples: bool = True

    def __call__(self, harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
        import torch

        n = min(len(harmful), len(harmless))
        if n < 2:
            raise ValueError("PCA of paired differences needs at least 2 prompts in each set")
        diffs = harmful[:n].double() - harmless[:n].double()
        _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
        return _scaled(vh[0], harmful.double(), harmless.double())


@dataclass(frozen=True)
class Probe:
    """Weights of an L2-regularised logistic regression harmful vs harmless (standardised
    inputs, weights mapped back), oriented towards harmful."""

    name: str = "probe"
    needs_samples: bool = True
    l2: float = 1e-2
    steps: int = 100

    def __call__(self, harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
        import torch

        x = torch.cat([harmful, harmless]).double()
        y = torch.cat([torch.ones(len(harmful)), torch.zeros(len(harmless))]).double()
        mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
        z = (x - mu) / sd
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=self.steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y)
            loss = loss + self.l2 * (w @ w)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        weights = w.detach() / sd  # the same linear function on unstandardised inputs
        norm = weights.norm()
        if norm == 0:
            return weights
        return _scaled(weights / norm, harmful.double(), harmless.double())


def mean_diff() -> Aggregator:
    return MeanDiff()


def pca_diff() -> Aggregator:
    return PCADiff()


def probe(l2: float = 1e-2) -> Aggregator:
    return Probe(l2=l2)


#: Aggregators by name (``--method`` on the command line).
AGGREGATORS: dict[str, Callable[[], Aggregator]] = {
    "mean_diff": mean_diff,
    "pca": pca_diff,
    "probe": probe,
}

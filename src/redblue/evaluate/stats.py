"""Rates with confidence intervals."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Rate", "newcombe_interval", "wilson_interval"]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (sound at 0 and 1, unlike the normal one)."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``n``, with a 95% Wilson interval."""

    successes: int
    n: int

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {**asdict(self), "rate": self.value, "ci_low": low, "ci_high": high}

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value:.2f} [{low:.2f}, {high:.2f}] ({self.successes}/{self.n})"


def newcombe_interval(
    k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``k_b/n_b - k_a/n_a`` (two independent rates).

    Method 10 of Newcombe (1998), built from the two Wilson intervals; unlike the
    normal interval it stays sound near 0 and 1 and for small samples.
    """
    if n_a <= 0 or n_b <= 0:
        raise ValueError(f"both rates need n > 0, got {n_a} and {n_b}")
    p_a, p_b = k_a / n_a, k_b / n_b
    low_a, high_a = wilson_interval(k_a, n_a, confidence)
    low_b, high_b = wilson_interval(k_b, n_b, confidence)
    d = p_b - p_a
    low = d - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = d + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return max(-1.0, low), min(1.0, high)

"""Single-pass scoring: read the detector's activations from the pass that serves a request.

An activation detector (:class:`~redblue.detect.DirectionDetector`,
:class:`~redblue.detect.ProbeDetector`) needs the residual stream entering a few
layers at a few post-instruction positions (:class:`~redblue.detect.TokenProbeDetector`:
at every token of the prompt, ``positions`` ``None``). :func:`capture_prefill` hooks those
layers during ``model.generate`` and keeps only the first forward pass over the
prompt (the prefill), so generation and detection share one pass; the detector
then scores the captured ``[batch, n_layers, n_positions or n_tokens, d_model]`` tensor with
``score_activations``. Detectors without activations (perplexity, output refusal)
have no single pass: :func:`reads_activations` says which is which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from redblue.models.hooks import Hooks, hook_residual

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ActivationScorer", "Captured", "capture_prefill", "reads_activations"]


@runtime_checkable
class ActivationScorer(Protocol):
    """A detector that scores activations read at its ``layers`` and ``positions`` (``None``:
    every token of the prompt)."""

    layers: list[int]
    positions: list[int] | None
    system: str | None

    def score_activations(self, acts: torch.Tensor) -> torch.Tensor: ...


def reads_activations(detector: object) -> bool:
    """Whether ``detector`` can score from captured activations (one shared pass)."""
    return isinstance(detector, ActivationScorer)


class Captured:
    """The residual stream of the first forward pass, at fixed layers and positions (``None``:
    every position)."""

    def __init__(self, layers: Sequence[int], positions: Sequence[int] | None) -> None:
        self.layers = list(layers)
        self.positions = None if positions is None else list(positions)
        self._seen: dict[int, torch.Tensor] = {}

    @property
    def complete(self) -> bool:
        return len(self._seen) == len(self.layers)

    def reader(self, layer: int) -> Callable[[torch.Tensor], None]:
        import torch

        positions = self.positions
        need = 1 if positions is None else max(-p for p in positions)

        def read(hidden: torch.Tensor) -> None:
            # only the prefill: later passes (one generated token each) are skipped
            if layer not in self._seen and hidden.shape[1] >= need:
                kept = hidden if positions is None else hidden[:, positions]
                self._seen[layer] = kept.detach().to("cpu", torch.float32)

        return read

    @property
    def values(self) -> torch.Tensor:
        """``[batch, n_layers, n_positions, d_model]`` float32 on the CPU (``n_positions``:
        the prompt's length when every position is read)."""
        import torch

        if not self.complete:
            missing = [layer for layer in self.layers if layer not in self._seen]
            raise RuntimeError(f"no forward pass reached layers {missing} inside the capture")
        return torch.stack([self._seen[layer] for layer in self.layers], dim=1)


@contextmanager
def capture_prefill(
    model: nn.Module, layers: Sequence[int], positions: Sequence[int] | None
) -> Iterator[Captured]:
    """Keep the residual stream entering ``layers`` at ``positions`` (negative, counted from the
    end of the prompt; ``None``: every position) during the first forward pass inside the
    block; hooks are removed on exit, errors included.

    ``with capture_prefill(model, d.layers, d.positions) as cap: model.generate(...)`` then
    ``d.score_activations(cap.values)`` equals ``d.score(...)`` on the same prompt.
    """
    captured = Captured(layers, positions)
    groups: list[Hooks] = []
    try:
        for layer in captured.layers:
            groups.append(hook_residual(model, captured.reader(layer), layers=[layer], where="pre"))
        yield captured
    finally:
        for group in groups:
            group.remove()

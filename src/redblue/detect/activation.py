"""Detectors that read post-instruction activations (one hooked forward pass per batch).

* :class:`DirectionDetector`: the projection of the residual stream onto the
  refusal direction, averaged over the chosen layers and positions; no training.
* :class:`ProbeDetector`: logistic regression (L2, L-BFGS in torch) on the
  standardised activations of several layers and positions, concatenated (by
  default every post-instruction position of the model's chat template).
* :class:`TokenProbeDetector`: the same regression on every token of the prompt,
  its logits averaged (or maxed) over the prompt. A suffix appended to a request
  (GCG, a soft prompt) cannot change what a causal model computed at the
  request's own tokens, so this reader still sees the request.

All three also score activations read elsewhere (``score_activations``): the guard
server captures them from the forward pass that serves a request, so detection
costs no extra pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from redblue.detect.detector import (
    Calibration,
    Detector,
    LogisticDetector,
    data_hash,
    provenance_of,
    texts_of,
)
from redblue.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet
    from redblue.directions import Direction

__all__ = ["DirectionDetector", "ProbeDetector", "TokenProbeDetector"]


def _activations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet | Sequence[str],
    layers: Sequence[int],
    positions: Sequence[int],
    system: str | None,
    batch_size: int,
) -> torch.Tensor:
    """``[n_prompts, n_layers, n_positions, d_model]`` from one hooked forward pass per batch."""
    from redblue.activations import collect

    return collect(
        model,
        tokenizer,
        texts_of(prompts),
        layers=layers,
        positions=positions,
        system=system,
        batch_size=batch_size,
        progress=False,
    ).values


def _check_shape(
    acts: torch.Tensor, layers: Sequence[int], positions: Sequence[int], d_model: int
) -> None:
    expected = (len(layers), len(positions), d_model)
    if acts.dim() != 4 or tuple(acts.shape[1:]) != expected:
        raise ConfigError(
            f"activations must be [n_prompts, n_layers={expected[0]}, n_positions={expected[1]}, "
            f"d_model={expected[2]}], got {tuple(acts.shape)}",
            where="score_activations",
            fix=f"read the residual stream entering layers {list(layers)} at positions {list(positions)}",
        )


class DirectionDetector(Detector):
    """Mean projection of the residual stream onto the refusal direction.

    ``vectors`` is ``[n_positions, n_layers, d_model]``: a unit vector per (position,
    layer) of ``positions`` x ``layers``; the score of a prompt is the mean over them
    of ``<resid_pre[layer, position], vector>``. Build it from a selected
    :class:`~redblue.directions.Direction` with :meth:`from_direction`, or with
    :meth:`fit` (difference in means, no selection).
    """

    kind = "direction"
    goal = "projection of post-instruction activations onto the refusal direction"

    def __init__(
        self,
        *,
        layers: Sequence[int],
        positions: Sequence[int] = (-1,),
        vectors: torch.Tensor | None = None,
        system: str | None = None,
        batch_size: int = 32,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(calibration=calibration, provenance=provenance)
        self.layers = [int(x) for x in layers]
        self.positions = [int(p) for p in positions]
        if not self.layers or not self.positions:
            raise ConfigError("a direction detector needs layers and positions", where="layers")
        if vectors is not None and tuple(vectors.shape[:2]) != (
            len(self.positions),
            len(self.layers),
        ):
            raise ConfigError(
                f"vectors must be [n_positions={len(self.positions)}, n_layers={len(self.layers)}, d_model], got {tuple(vectors.shape)}",
                where="vectors",
            )
        self.vectors = vectors
        self.system = system
        self.batch_size = batch_size

    @classmethod
    def from_direction(
        cls,
        direction: Direction,
        *,
        layers: Sequence[int] | str = "from_chosen",
        positions: Sequence[int] | None = None,
        system: str | None = None,
    ) -> DirectionDetector:
        """Read ``direction``'s vectors at ``layers`` and ``positions``.

        ``layers``: ``"chosen"`` (the direction's layer), ``"from_chosen"`` (that layer and
        every later one it holds: the residual stream carries the feature forward) or a
        list. ``positions`` default to the direction's chosen position.
        """
        import torch

        if layers == "chosen":
            chosen = [direction.layer]
        elif layers == "from_chosen":
            chosen = [x for x in direction.layers if x >= direction.layer]
        elif isinstance(layers, str):
            raise ConfigError(
                f"unknown layers {layers!r}",
                where="layers",
                fix="use chosen, from_chosen or a list",
            )
        else:
            chosen = list(layers)
        cols = [direction.position] if positions is None else list(positions)
        vectors = torch.stack(
            [torch.stack([direction.at(layer, p) for layer in chosen]) for p in cols]
        )
        return cls(
            layers=chosen,
            positions=cols,
            vectors=vectors.to(torch.float32),
            system=system if system is not None else direction.provenance.system,
            provenance={"direction": direction.metadata()["provenance"], "from": "direction"},
        )

    def fit(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        harmful: PromptSet | Sequence[str],
        harmless: PromptSet | Sequence[str],
    ) -> DirectionDetector:
        """Unit difference in means (harmful - harmless) at every (position, layer)."""
        acts = [
            _activations(
                model, tokenizer, p, self.layers, self.positions, self.system, self.batch_size
            )
            for p in (harmful, harmless)
        ]
        diff = (acts[0].mean(0) - acts[1].mean(0)).transpose(0, 1)  # [positions, layers, d]
        self.vectors = diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.provenance = provenance_of(
            model,
            method="mean_diff",
            harmful_hash=data_hash(texts_of(harmful)),
            harmless_hash=data_hash(texts_of(harmless)),
            n_harmful=int(acts[0].shape[0]),
            n_harmless=int(acts[1].shape[0]),
        )
        return self

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        self._required_vectors()
        return self.score_activations(
            _activations(
                model, tokenizer, prompts, self.layers, self.positions, self.system, self.batch_size
            )
        )

    def _required_vectors(self) -> torch.Tensor:
        if self.vectors is None:
            raise ConfigError(
                "the direction detector has no vectors",
                where="score",
                fix="build it with DirectionDetector.from_direction(direction) or call fit(...)",
            )
        return self.vectors

    def score_activations(self, acts: torch.Tensor) -> torch.Tensor:
        """Scores ``[n_prompts]`` from activations already read at this detector's ``layers``
        and ``positions``: ``acts`` is ``[n_prompts, n_layers, n_positions, d_model]``."""
        import torch

        vectors = self._required_vectors()
        _check_shape(acts, self.layers, self.positions, int(vectors.shape[-1]))
        acts = acts.to("cpu", torch.float32)
        proj = torch.einsum("nlpd,pld->n", acts, vectors.to(acts.dtype))
        return proj / (len(self.layers) * len(self.positions))

    def config(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "positions": self.positions,
            "system": self.system,
            "batch_size": self.batch_size,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.vectors is None else {"vectors": self.vectors}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Detector:
        return cls(**config, vectors=tensors.get("vectors"))


class ProbeDetector(LogisticDetector):
    """Logistic regression on standardised activations concatenated over layers and positions.

    Features are ``[n_prompts, n_layers * n_positions * d_model]``, standardised with the
    training set's ``mean`` and ``std``; the score is the probe's logit. Trained with
    full-batch L-BFGS on the mean cross-entropy plus ``l2 * |w|^2 / 2``.

    ``positions=None`` reads every post-instruction position (counted from the end of the
    prompt), found from the tokenizer's chat template when the probe is fitted. With these
    and ``l2=3``, ``tests/detect/test_organism_detection.py`` checks the issue's targets on
    the organism's unseen jailbreak wrappers.
    """

    kind = "probe"
    goal = "logistic probe on post-instruction activations of several layers"
    what = "probe"

    def __init__(
        self,
        *,
        layers: Sequence[int],
        positions: Sequence[int] | None = None,
        l2: float = 3.0,
        max_iter: int = 200,
        system: str | None = None,
        batch_size: int = 32,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            l2=l2,
            max_iter=max_iter,
            weight=weight,
            bias=bias,
            mean=mean,
            std=std,
            calibration=calibration,
            provenance=provenance,
        )
        self.layers = [int(x) for x in layers]
        self.positions = None if positions is None else [int(p) for p in positions]
        if not self.layers or self.positions == []:
            raise ConfigError("a probe needs layers and positions", where="layers")
        if weight is not None and self.positions is None:
            raise ConfigError(
                "a fitted probe needs the positions it was fitted on", where="positions"
            )
        self.system = system
        self.batch_size = batch_size

    def _features(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        acts = _activations(
            model, tokenizer, prompts, self.layers, self._positions(), self.system, self.batch_size
        )
        return acts.reshape(acts.shape[0], -1)

    def _positions(self) -> list[int]:
        if self.positions is None:
            raise ConfigError(
                "the probe's positions are set when it is fitted",
                where="positions",
                fix="call probe.fit(model, tokenizer, harmful, harmless) or give positions",
            )
        return self.positions

    def fit(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        harmful: PromptSet | Sequence[str],
        harmless: PromptSet | Sequence[str],
    ) -> ProbeDetector:
        if self.positions is None:
            from redblue.models import post_instruction_positions

            self.positions = post_instruction_positions(tokenizer, system=self.system)
        pos = self._features(model, tokenizer, harmful)
        neg = self._features(model, tokenizer, harmless)
        self._fit_classifier(
            pos, neg, harmful, harmless, **provenance_of(model, method="logistic_lbfgs")
        )
        return self

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        self._required_fit()
        return self.score_activations(
            _activations(
                model,
                tokenizer,
                prompts,
                self.layers,
                self._positions(),
                self.system,
                self.batch_size,
            )
        )

    def score_activations(self, acts: torch.Tensor) -> torch.Tensor:
        """The probe's logits ``[n_prompts]`` from activations already read at its ``layers``
        and ``positions``: ``acts`` is ``[n_prompts, n_layers, n_positions, d_model]``."""
        import torch

        fit = self._required_fit()
        positions = self._positions()
        d_model = int(fit.weight.shape[0]) // (len(self.layers) * len(positions))
        _check_shape(acts, self.layers, positions, d_model)
        return fit.logits(acts.to("cpu", torch.float32).reshape(acts.shape[0], -1))

    def config(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "positions": self.positions,
            "l2": self.l2,
            "max_iter": self.max_iter,
            "system": self.system,
            "batch_size": self.batch_size,
        }


Pool = Literal["mean", "max"]


class TokenProbeDetector(LogisticDetector):
    """Logistic regression on each token's activations, pooled over the prompt's tokens.

    Every token of a training prompt (chat template, system prompt and instruction) is a
    row labelled with its prompt's label; features are the residual stream entering
    ``layers``, concatenated, standardised with the training rows' ``mean`` and ``std``.
    A prompt's score is the ``pool`` (``mean`` or ``max``) of its tokens' logits.

    Appended text cannot hide a request from it: in a causal model the request's own
    tokens are computed before any suffix, so an adversarial suffix (GCG, a soft prompt)
    moves only its own tokens' logits. With ``max`` one strongly harmful token decides, which
    a long benign context around it cannot average away; ``mean`` is the default.
    ``tests/detect/test_organism_detection.py`` checks the issue's targets on the organism.
    """

    kind = "token_probe"
    goal = "logistic probe on every prompt token's activations, pooled over the prompt"
    what = "token probe"
    #: Every token of the prompt (the guard's capture reads them all).
    positions = None

    def __init__(
        self,
        *,
        layers: Sequence[int],
        pool: Pool = "mean",
        l2: float = 3.0,
        max_iter: int = 200,
        system: str | None = None,
        batch_size: int = 32,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            l2=l2,
            max_iter=max_iter,
            weight=weight,
            bias=bias,
            mean=mean,
            std=std,
            calibration=calibration,
            provenance=provenance,
        )
        self.layers = [int(x) for x in layers]
        if not self.layers:
            raise ConfigError("a token probe needs layers", where="layers")
        if pool not in ("mean", "max"):
            raise ConfigError(f"unknown pool {pool!r}", where="pool", fix="use mean or max")
        self.pool: Pool = pool
        self.system = system
        self.batch_size = batch_size

    def _tokens(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> list[torch.Tensor]:
        """``[n_tokens, n_layers * d_model]`` per prompt."""
        from redblue.activations import collect_tokens

        acts = collect_tokens(
            model,
            tokenizer,
            texts_of(prompts),
            layers=self.layers,
            system=self.system,
            batch_size=self.batch_size,
        )
        return [a.transpose(0, 1).reshape(a.shape[1], -1) for a in acts]

    def fit(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        harmful: PromptSet | Sequence[str],
        harmless: PromptSet | Sequence[str],
    ) -> TokenProbeDetector:
        import torch

        pos = torch.cat(self._tokens(model, tokenizer, harmful))
        neg = torch.cat(self._tokens(model, tokenizer, harmless))
        method = provenance_of(model, method="token_logistic_lbfgs", n_tokens=len(pos) + len(neg))
        self._fit_classifier(pos, neg, harmful, harmless, **method)
        return self

    def _pooled(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean() if self.pool == "mean" else logits.max()

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        import torch

        fit = self._required_fit()
        return torch.stack(
            [self._pooled(fit.logits(t)) for t in self._tokens(model, tokenizer, prompts)]
        )

    def score_activations(
        self, acts: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores ``[n_prompts]`` from the residual stream entering this detector's ``layers``
        at every token, ``acts`` ``[n_prompts, n_layers, n_tokens, d_model]``; ``mask``
        ``[n_prompts, n_tokens]`` (true on the prompt's tokens) leaves out padding."""
        import torch

        fit = self._required_fit()
        d_model = int(fit.weight.shape[0]) // len(self.layers)
        if acts.dim() != 4 or acts.shape[1] != len(self.layers) or acts.shape[3] != d_model:
            raise ConfigError(
                f"activations must be [n_prompts, n_layers={len(self.layers)}, n_tokens, "
                f"d_model={d_model}], got {tuple(acts.shape)}",
                where="score_activations",
                fix=f"read the residual stream entering layers {self.layers} at every token",
            )
        n, _, n_tokens, _ = acts.shape
        if mask is not None and tuple(mask.shape) != (n, n_tokens):
            raise ConfigError(
                f"mask must be [n_prompts={n}, n_tokens={n_tokens}], got {tuple(mask.shape)}",
                where="mask",
            )
        rows = acts.to("cpu", torch.float32).permute(0, 2, 1, 3).reshape(n, n_tokens, -1)
        keep = torch.ones(n, n_tokens, dtype=torch.bool) if mask is None else mask.cpu().bool()
        if not bool(keep.any(dim=1).all()):
            raise ConfigError(
                "a prompt's mask keeps no token", where="mask", fix="mark its tokens true"
            )
        return torch.stack([self._pooled(fit.logits(rows[i][keep[i]])) for i in range(n)])

    def config(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "pool": self.pool,
            "l2": self.l2,
            "max_iter": self.max_iter,
            "system": self.system,
            "batch_size": self.batch_size,
        }

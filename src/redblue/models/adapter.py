"""A model seen through its :class:`ArchSpec`: blocks, projections, embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redblue.errors import ArchitectureError
from redblue.models.arch import _OVERRIDE_ATTR, ArchSpec, arch_spec, get_module

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Writer:
    """A module whose output is added to the residual stream.

    ``post_norm`` is the norm applied to that output before it joins the stream
    (Gemma2/3, OLMo2), or ``None``. ``conv1d`` marks GPT-2 ``Conv1D`` weights
    (stored ``[d_in, d_out]``).
    """

    name: str
    module: nn.Module
    layer: int | None
    post_norm: nn.Module | None = None
    conv1d: bool = False


@dataclass(frozen=True)
class ModelAdapter:
    """Named access to the parts of one causal LM.

    The adapter holds no state of its own beyond the model and its spec; build
    one whenever needed with :func:`adapt`.
    """

    model: nn.Module
    spec: ArchSpec

    @property
    def family(self) -> str:
        return str(getattr(self.model.config, "model_type", type(self.model).__name__))

    @property
    def blocks(self) -> nn.ModuleList:
        return get_module(self.model, self.spec.blocks)  # type: ignore[return-value]

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def embed(self) -> nn.Module:
        return get_module(self.model, self.spec.embed)

    @property
    def pos_embed(self) -> nn.Module | None:
        return get_module(self.model, self.spec.pos_embed) if self.spec.pos_embed else None

    @property
    def final_norm(self) -> nn.Module:
        return get_module(self.model, self.spec.final_norm)

    @property
    def unembed(self) -> nn.Module:
        return get_module(self.model, self.spec.unembed)

    @property
    def _embedding_weight(self) -> torch.Tensor:
        import torch

        weight = self.embed.weight
        assert isinstance(weight, torch.Tensor)
        return weight

    @property
    def device(self) -> torch.device:
        """Where the token embedding lives."""
        return self._embedding_weight.device

    @property
    def d_model(self) -> int:
        """Width of the residual stream, read from the token embedding."""
        return int(self._embedding_weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self._embedding_weight.shape[0])

    def block(self, layer: int) -> nn.Module:
        n = self.n_layers
        if not -n <= layer < n:
            raise IndexError(f"layer {layer} out of range for a model with {n} layers")
        return self.blocks[layer]

    def attn_out(self, layer: int) -> nn.Module:
        """The attention output projection of ``layer`` (writes into the residual stream)."""
        return get_module(self.block(layer), self.spec.attn_out)

    def mlp_out(self, layer: int) -> nn.Module:
        """The MLP output projection of ``layer`` (writes into the residual stream)."""
        return get_module(self.block(layer), self.spec.mlp_out)

    def attn_out_norm(self, layer: int) -> nn.Module | None:
        return (
            get_module(self.block(layer), self.spec.attn_out_norm)
            if self.spec.attn_out_norm
            else None
        )

    def mlp_out_norm(self, layer: int) -> nn.Module | None:
        return (
            get_module(self.block(layer), self.spec.mlp_out_norm)
            if self.spec.mlp_out_norm
            else None
        )

    def writers(self, layers: Iterable[int] | None = None) -> list[Writer]:
        """Every module that writes into the residual stream, in order.

        With ``layers=None``: the token (and position) embedding, then the
        attention and MLP output projections of every block. With a list of
        layers: only those blocks' projections.
        """
        out: list[Writer] = []
        if layers is None:
            out.append(Writer("embed", self.embed, None))
            if self.pos_embed is not None:
                out.append(Writer("pos_embed", self.pos_embed, None))
        for layer in range(self.n_layers) if layers is None else layers:
            out.append(
                Writer(
                    f"attn_out.{layer}",
                    self.attn_out(layer),
                    layer,
                    self.attn_out_norm(layer),
                    self.spec.conv1d,
                )
            )
            out.append(
                Writer(
                    f"mlp_out.{layer}",
                    self.mlp_out(layer),
                    layer,
                    self.mlp_out_norm(layer),
                    self.spec.conv1d,
                )
            )
        return out

    def tied_embeddings(self) -> bool:
        """True when the unembedding shares its weight with the token embedding."""
        return self.unembed.weight is self._embedding_weight

    def untie_embeddings(self) -> None:
        """Give the unembedding its own copy of the weight (before editing the embedding)."""
        import torch

        if not self.tied_embeddings():
            return
        self.unembed.weight = torch.nn.Parameter(self._embedding_weight.detach().clone())
        config: Any = self.model.config
        config.tie_word_embeddings = False
        text_config = getattr(config, "get_text_config", lambda: config)()
        text_config.tie_word_embeddings = False


def norm_gain(norm: nn.Module, d_model: int) -> torch.Tensor:
    """The elementwise gain of an RMS-style norm, read by applying it to a vector of ones.

    Works whatever the convention (``weight`` or ``1 + weight``); float64, ``[d_model]``.
    """
    import torch

    weight = next(norm.parameters(), None)
    device = weight.device if weight is not None else "cpu"
    dtype = weight.dtype if weight is not None else torch.float32
    with torch.no_grad():
        gain = norm(torch.ones(1, 1, d_model, device=device, dtype=dtype))
    return gain.reshape(-1).to(torch.float64)


def adapt(model: nn.Module, arch: ArchSpec | None = None) -> ModelAdapter:
    """Return the :class:`ModelAdapter` of ``model``.

    Passing ``arch`` overrides the table for this model object (and is
    remembered on it, so later calls without ``arch`` find it). Every path of
    the spec is checked to resolve.
    """
    spec = arch_spec(model, arch)
    adapter = ModelAdapter(model, spec)
    # Resolve every path once so a wrong row fails here, with the path named.
    try:
        adapter.embed, adapter.final_norm, adapter.unembed, adapter.pos_embed  # noqa: B018
        if adapter.n_layers == 0:
            raise ArchitectureError(f"{spec.blocks!r} of {type(model).__name__} holds no blocks")
        adapter.attn_out(0), adapter.mlp_out(0), adapter.attn_out_norm(0), adapter.mlp_out_norm(0)
    except ArchitectureError as e:
        raise ArchitectureError(
            e.what,
            where=f"ArchSpec for {type(model).__name__}",
            fix="correct the module path in the ArchSpec (print(model) shows the module tree)",
        ) from None
    if arch is not None:
        setattr(model, _OVERRIDE_ATTR, arch)
    return adapter

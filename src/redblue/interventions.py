"""Interventions: remove or add a direction, at run time or permanently in the weights.

* :func:`ablate` projects a direction out of everything written into the
  residual stream (embeddings and every attention and MLP output), so the stream
  never holds a component along it: at every layer and position, generated
  tokens included.
* :func:`add` adds ``alpha`` times the direction's scale at one layer, by
  default at prompt positions only (adding at generated tokens degenerates the
  output).
* :func:`orthogonalize` makes :func:`ablate` permanent by editing the same
  writers' weights (and biases); the logits match run-time ablation to float
  rounding, and :func:`redblue.models.export` writes a folder any HF loader reads.
* :func:`ablate_writers` and :func:`orthogonalize_writers` do the same per writer,
  each with its own vector and weight (the abliteration search's profiles); the
  weight edit returns a :class:`WeightEdit` handle that restores the original
  tensors bit for bit.

``ablate`` and ``add`` are context managers with handle twins (``h = ablate(m,
d); ...; h.remove()``); their hooks are removed on exit, errors included, and
groups nest in any order.

Families whose sublayer outputs pass through a norm before joining the stream
(Gemma2/3, OLMo2) are handled by projecting each output against ``gain * r``
(the norm's gain times the direction): the normed output is then orthogonal to
``r``, and the weight edit reproduces it exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from redblue.directions.direction import Direction
from redblue.models.adapter import Writer, adapt, norm_gain
from redblue.models.hooks import Hooks, hook_residual

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Where :func:`add` adds: ``"prompt"`` (forward passes over more than one
#: token: the prompt, not the tokens generated one by one), ``"all"``, ``"last"``
#: (the last prompt token only).
AddPositions = Literal["prompt", "all", "last"]


def _unit(direction: Direction | torch.Tensor) -> torch.Tensor:
    import torch

    vector = direction.vector if isinstance(direction, Direction) else direction
    vector = vector.detach().to(torch.float64).reshape(-1)
    norm = vector.norm()
    if norm == 0:
        raise ValueError("cannot use a zero vector as a direction")
    return vector / norm


def writer_basis(writer: Writer, r: torch.Tensor, d_model: int) -> torch.Tensor:
    """The unit vector to project out of ``writer``'s output so that what reaches the
    stream is orthogonal to ``r`` (``r`` itself unless a norm follows the writer)."""
    if writer.post_norm is None:
        return r
    a = norm_gain(writer.post_norm, d_model).to(r.device) * r
    return a / a.norm().clamp_min(1e-30)


def _project_out(basis: torch.Tensor) -> Any:
    """A forward hook removing the ``basis`` component of a module's output (in place: the
    output is a fresh tensor that backward does not need)."""

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        b = basis if basis.dtype == output.dtype else basis.to(output.dtype)
        return output.addcmul_((output @ b).unsqueeze(-1), b, value=-1.0)

    return hook


def ablate(
    model: nn.Module,
    direction: Direction | torch.Tensor,
    *,
    layers: Iterable[int] | None = None,
) -> Hooks:
    """Project ``direction`` out of the residual stream.

    With ``layers=None`` every writer is hooked (embeddings and all blocks); with
    a list, only those blocks' attention and MLP outputs. ``direction`` is a
    :class:`Direction` (its chosen vector) or a ``[d_model]`` tensor.
    """
    adapter = adapt(model)
    r = _unit(direction)
    hooks = Hooks()
    try:
        for writer in adapter.writers(layers):
            a = writer_basis(writer, r.to(adapter.device), adapter.d_model)
            dtype = next(writer.module.parameters()).dtype  # cast once, not at every call
            hooks.add(writer.module.register_forward_hook(_project_out(a.to(dtype))))
    except BaseException:
        hooks.remove()
        raise
    return hooks


def add(
    model: nn.Module,
    direction: Direction | torch.Tensor,
    *,
    layer: int | None = None,
    alpha: float = 1.0,
    positions: AddPositions = "prompt",
) -> Hooks:
    """Add ``alpha * scale * unit`` to the residual stream entering block ``layer``.

    With a :class:`Direction`, ``layer`` defaults to its chosen layer, the vector
    is its candidate at that layer (chosen position), and ``scale`` its length
    there (so ``alpha=1`` adds the mean difference, as in Arditi et al.). With a
    tensor, ``layer`` is required and the tensor is added as given times ``alpha``.
    """
    import torch

    if isinstance(direction, Direction):
        layer = direction.layer if layer is None else layer
        p, i = direction.index(layer, direction.position)
        vector = direction.vectors[p, i].to(torch.float64) * float(direction.norms[p, i])
        if vector.norm() == 0:
            raise ValueError(f"the direction is degenerate at layer {layer}; choose another layer")
    else:
        if layer is None:
            raise ValueError("add() with a raw tensor needs layer=")
        vector = direction.detach().to(torch.float64).reshape(-1)
    if positions not in ("prompt", "all", "last"):
        raise ValueError(f"positions must be 'prompt', 'all' or 'last', got {positions!r}")
    delta = alpha * vector

    def steer(hidden: torch.Tensor) -> torch.Tensor | None:
        shift = delta.to(hidden.device, hidden.dtype)
        if positions == "all":
            return hidden + shift
        if hidden.shape[1] <= 1:  # a generated token
            return None
        if positions == "last":
            hidden = hidden.clone()
            hidden[:, -1] += shift
            return hidden
        return hidden + shift

    return hook_residual(model, steer, layers=[layer], where="pre")


def _edit_linear(weight: torch.Tensor, a: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """Weight whose outputs have no component along ``a``."""
    import torch

    w = weight.detach().to(torch.float64)
    a = a.to(w.device)
    if conv1d:  # y = x W, W [d_in, d_out]
        return w - torch.outer(w @ a, a)
    return w - torch.outer(a, a @ w)  # y = W x, W [d_out, d_in]


def orthogonalize(
    model: nn.Module,
    direction: Direction | torch.Tensor,
    *,
    inplace: bool = True,
) -> nn.Module:
    """Edit the weights so that nothing writes along ``direction``: the permanent twin of :func:`ablate`.

    Edits the token (and position) embedding and every attention and MLP output
    weight and bias, in float64 and cast back. A tied unembedding is first
    given its own copy, so the logits read the stream as before. Returns the
    edited model (a deep copy when ``inplace=False``).
    """
    import torch

    if not inplace:
        model = copy.deepcopy(model)
    adapter = adapt(model)
    r = _unit(direction).to(adapter.device)
    adapter.untie_embeddings()
    with torch.no_grad():
        for writer in adapter.writers():
            a = writer_basis(writer, r, adapter.d_model)
            weight = writer.module.weight
            assert isinstance(weight, torch.Tensor)
            if writer.layer is None:  # embedding rows are outputs: [vocab, d_model]
                w = weight.detach().to(torch.float64)
                new = w - torch.outer(w @ a, a)
            else:
                new = _edit_linear(weight, a, writer.conv1d)
            weight.copy_(new.to(weight.dtype))
            bias = getattr(writer.module, "bias", None)
            if bias is not None:
                b = bias.detach().to(torch.float64)
                bias.copy_((b - (b @ a) * a).to(bias.dtype))
    return model


# -- weighted, per-writer edits (the abliteration search) ------------------------------------


@dataclass(frozen=True)
class Projection:
    """Remove ``weight`` times the component along ``vector`` from one writer's output.

    ``vector`` is ``[d_model]`` (normalised on use). ``weight=1`` removes the component
    (as :func:`ablate`), ``0`` does nothing, above 1 overshoots to the opposite side.
    """

    vector: torch.Tensor
    weight: float = 1.0


#: Writer name (:attr:`redblue.models.adapter.Writer.name`: ``"embed"``, ``"pos_embed"``,
#: ``"attn_out.3"``, ``"mlp_out.3"``) to the projection applied to its output.
WriterEdits = Mapping[str, Projection]


def _edited_writers(
    model: nn.Module, edits: WriterEdits
) -> list[tuple[Writer, torch.Tensor, float]]:
    """``(writer, basis, weight)`` for every writer named in ``edits`` with a non-zero weight."""
    adapter = adapt(model)
    writers = {w.name: w for w in adapter.writers()}
    unknown = sorted(set(edits) - set(writers))
    if unknown:
        raise ValueError(
            f"no writer named {', '.join(unknown)}; this model has {', '.join(writers)}"
        )
    out = []
    for name, projection in edits.items():
        if projection.weight == 0:
            continue
        writer = writers[name]
        r = _unit(projection.vector).to(adapter.device)
        out.append((writer, writer_basis(writer, r, adapter.d_model), float(projection.weight)))
    return out


def _project_out_weighted(basis: torch.Tensor, weight: float) -> Any:
    """A forward hook removing ``weight`` times the ``basis`` component of a module's output."""

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        b = basis if basis.dtype == output.dtype else basis.to(output.dtype)
        return output.addcmul_((output @ b).unsqueeze(-1), b, value=-weight)

    return hook


def ablate_writers(model: nn.Module, edits: WriterEdits) -> Hooks:
    """Run-time twin of :func:`orthogonalize_writers`: hook each named writer so its output
    loses ``weight`` times its component along the projection's vector. The weights are
    never touched, so removing the hooks restores the model exactly."""
    hooks = Hooks()
    try:
        for writer, basis, weight in _edited_writers(model, edits):
            dtype = next(writer.module.parameters()).dtype
            hooks.add(
                writer.module.register_forward_hook(_project_out_weighted(basis.to(dtype), weight))
            )
    except BaseException:
        hooks.remove()
        raise
    return hooks


class WeightEdit:
    """Handle of an in-place weight edit: :meth:`restore` copies the original tensors back,
    bit for bit, and re-ties an embedding that the edit untied. Also a context manager."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._tie: tuple[Any, bool] | None = None

    def _save(self, tensor: torch.Tensor) -> None:
        self._saved.append((tensor, tensor.detach().clone()))

    def _untie(self) -> None:
        adapter = adapt(self._model)
        if not adapter.tied_embeddings():
            return
        config: Any = self._model.config
        self._tie = (adapter.unembed.weight, bool(config.tie_word_embeddings))
        adapter.untie_embeddings()

    @property
    def active(self) -> bool:
        return bool(self._saved) or self._tie is not None

    def restore(self) -> None:
        """Put the original weights back (idempotent)."""
        import torch

        with torch.no_grad():
            while self._saved:
                tensor, original = self._saved.pop()
                tensor.copy_(original)
        if self._tie is not None:
            shared, flag = self._tie
            adapt(self._model).unembed.weight = shared
            config: Any = self._model.config
            config.tie_word_embeddings = flag
            text_config = getattr(config, "get_text_config", lambda: config)()
            text_config.tie_word_embeddings = flag
            self._tie = None

    def __enter__(self) -> WeightEdit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def orthogonalize_writers(model: nn.Module, edits: WriterEdits) -> WeightEdit:
    """Edit the named writers' weights (and biases) in place so that each output loses
    ``weight`` times its component along the projection's vector: ``W <- W - w a a^T W``.

    With weight 1 on every writer this is :func:`orthogonalize`, bit for bit. Returns a
    :class:`WeightEdit` that keeps the original tensors: ``with orthogonalize_writers(m, e):``
    edits for the block only; drop the handle to keep the edit.
    """
    import torch

    edit = WeightEdit(model)
    planned = _edited_writers(model, edits)
    try:
        if any(writer.name == "embed" for writer, _, _ in planned):
            edit._untie()
        with torch.no_grad():
            for writer, a, scale in planned:
                weight = writer.module.weight
                assert isinstance(weight, torch.Tensor)
                w = weight.detach().to(torch.float64)
                if writer.layer is None or writer.conv1d:  # outputs are rows: w [*, d_model]
                    new = w - scale * torch.outer(w @ a, a)
                else:  # y = W x, W [d_model, d_in]
                    new = w - scale * torch.outer(a, a @ w)
                edit._save(weight)
                weight.copy_(new.to(weight.dtype))
                bias = getattr(writer.module, "bias", None)
                if bias is not None:
                    b = bias.detach().to(torch.float64)
                    edit._save(bias)
                    bias.copy_((b - scale * (b @ a) * a).to(bias.dtype))
    except BaseException:
        edit.restore()
        raise
    return edit

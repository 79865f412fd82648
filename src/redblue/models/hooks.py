"""Residual-stream access: hooks before and after every decoder block.

Every hook lives in a :class:`Hooks` group, which is both a context manager
and a handle: ``with hook_residual(...):`` removes its hooks on exit (errors
included), and ``h = hook_residual(...); h.remove()`` does the same by hand.
A group removes only its own hooks, so groups nest in any order.

Blocks return a tensor in recent transformers and a tuple ``(hidden, ...)`` in
older ones; both are handled here, so callers always see ``[batch, seq, d_model]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from redblue.models.adapter import adapt

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.hooks import RemovableHandle

#: ``"pre"``: the residual stream entering a block; ``"post"``: leaving it.
Where = Literal["pre", "post"]
#: Reads (and optionally replaces) the residual stream ``[batch, seq, d_model]``.
ResidualFn = Callable[["torch.Tensor"], "torch.Tensor | None"]


class Hooks:
    """A group of torch hook handles, removed together exactly once."""

    def __init__(self, handles: Iterable[RemovableHandle] = ()) -> None:
        self._handles: list[RemovableHandle] = list(handles)

    def add(self, handle: RemovableHandle) -> None:
        self._handles.append(handle)

    def remove(self) -> None:
        """Remove this group's hooks (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _replace_hidden(output: Any, new: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (new, *output[1:])
    return new


def _post_hook(fn: ResidualFn) -> Callable[..., Any]:
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        new = fn(hidden)
        return None if new is None else _replace_hidden(output, new)

    return hook


def _pre_hook(fn: ResidualFn) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        new = fn(kwargs["hidden_states"])
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    return hook


def _register(block: nn.Module, fn: ResidualFn, where: Where) -> RemovableHandle:
    if where == "post":
        return block.register_forward_hook(_post_hook(fn))
    if where == "pre":
        return block.register_forward_pre_hook(_pre_hook(fn), with_kwargs=True)
    raise ValueError(f"where must be 'pre' or 'post', got {where!r}")


def hook_residual(
    model: nn.Module,
    fn: ResidualFn,
    *,
    layers: Iterable[int] | None = None,
    where: Where = "post",
) -> Hooks:
    """Call ``fn`` on the residual stream at ``layers`` (all by default).

    ``fn(hidden)`` receives ``[batch, seq, d_model]``; returning a tensor of the
    same shape replaces the stream, returning ``None`` leaves it as it is.
    """
    adapter = adapt(model)
    chosen = range(adapter.n_layers) if layers is None else layers
    hooks = Hooks()
    try:
        for layer in chosen:
            hooks.add(_register(adapter.block(layer), fn, where))
    except BaseException:
        hooks.remove()
        raise
    return hooks


@contextmanager
def record_residual(
    model: nn.Module,
    *,
    layers: Iterable[int] | None = None,
    where: Where = "post",
) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the residual stream at ``layers`` during the forward passes in the block.

    Yields a dict ``layer -> [tensor [batch, seq, d_model] per forward call]``,
    detached and on the CPU. Memory grows with every call: for large prompt sets
    use streaming statistics instead.
    """
    adapter = adapt(model)
    chosen = list(range(adapter.n_layers) if layers is None else layers)
    records: dict[int, list[torch.Tensor]] = {layer: [] for layer in chosen}
    hooks = Hooks()
    try:
        for layer in chosen:

            def keep(hidden: torch.Tensor, layer: int = layer) -> None:
                records[layer].append(hidden.detach().to("cpu"))

            hooks.add(_register(adapter.block(layer), keep, where))
        yield records
    finally:
        hooks.remove()

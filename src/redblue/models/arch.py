"""The architecture table: where each model family keeps its parts.

Everything in redblue that touches a model's internals goes through an
:class:`ArchSpec`. One row per family (keyed by ``config.model_type``) names the
module paths of the decoder blocks, the attention and MLP output projections,
the token embedding, the final norm and the unembedding. Nothing outside
``redblue.models`` branches on architecture names.

A family that is missing fails with an :class:`ArchitectureError` that names the
class, suggests a row from the modules it found, and shows how to pass it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from redblue.errors import ArchitectureError, ConfigError

if TYPE_CHECKING:
    from torch import nn

#: Attribute set on a model object by :func:`adapt` when the caller passes an
#: override, so that later calls on the same model find it. Per object, not global.
_OVERRIDE_ATTR = "_redblue_arch_spec"


@dataclass(frozen=True)
class ArchSpec:
    """Module paths of one model family.

    ``blocks``, ``embed``, ``final_norm`` and ``unembed`` are dotted paths from
    the ``*ForCausalLM`` object; ``attn_out``, ``mlp_out`` and the optional
    post-sublayer norms are relative to one decoder block.
    """

    blocks: str
    attn_out: str
    mlp_out: str
    embed: str
    final_norm: str
    unembed: str
    pos_embed: str | None = None
    #: A norm applied to the attention output *before* it joins the residual
    #: stream (Gemma2/3, OLMo2). Weight edits must account for it.
    attn_out_norm: str | None = None
    #: Likewise for the MLP output.
    mlp_out_norm: str | None = None
    #: True when the output projections are GPT-2 style ``Conv1D`` modules whose
    #: weight is stored as ``[d_in, d_out]`` instead of ``[d_out, d_in]``.
    conv1d: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "arch spec") -> ArchSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown ArchSpec field(s) {unknown}",
                where=where,
                fix=f"use only these fields: {sorted(known)}",
            )
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise ConfigError(
                f"ArchSpec is missing field(s) {missing}",
                where=where,
                fix="give every module path: blocks, attn_out, mlp_out, embed, final_norm, unembed",
            )
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | Path) -> ArchSpec:
        """Read an ArchSpec from a JSON file (the ``--arch`` option of the CLI)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("architecture file not found", where=str(path)) from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"invalid JSON: {e.msg}", where=f"{path}:{e.lineno}") from None
        if not isinstance(data, dict):
            raise ConfigError("expected a JSON object of module paths", where=str(path))
        return cls.from_dict(data, where=str(path))


def _llama_like(**extra: Any) -> ArchSpec:
    return ArchSpec(
        blocks="model.layers",
        attn_out="self_attn.o_proj",
        mlp_out="mlp.down_proj",
        embed="model.embed_tokens",
        final_norm="model.norm",
        unembed="lm_head",
        **extra,
    )


_POST_NORMS = {
    "attn_out_norm": "post_attention_layernorm",
    "mlp_out_norm": "post_feedforward_layernorm",
}

#: The table, keyed by ``config.model_type``. Add a row here to support a family.
ARCH_TABLE: Mapping[str, ArchSpec] = MappingProxyType(
    {
        "llama": _llama_like(),
        "mistral": _llama_like(),
        "qwen2": _llama_like(),
        "qwen3": _llama_like(),
        "gemma": _llama_like(),
        "gemma2": _llama_like(**_POST_NORMS),
        "gemma3_text": _llama_like(**_POST_NORMS),
        "olmo": _llama_like(),
        "olmo2": _llama_like(**_POST_NORMS),
        "granite": _llama_like(),
        "phi3": _llama_like(),
        "gpt2": ArchSpec(
            blocks="transformer.h",
            attn_out="attn.c_proj",
            mlp_out="mlp.c_proj",
            embed="transformer.wte",
            final_norm="transformer.ln_f",
            unembed="lm_head",
            pos_embed="transformer.wpe",
            conv1d=True,
        ),
        "gpt_neox": ArchSpec(
            blocks="gpt_neox.layers",
            attn_out="attention.dense",
            mlp_out="mlp.dense_4h_to_h",
            embed="gpt_neox.embed_in",
            final_norm="gpt_neox.final_layer_norm",
            unembed="lm_head",
        ),
    }
)


def get_module(root: nn.Module, path: str) -> nn.Module:
    """Return the submodule at a dotted ``path`` (``"model.layers.3.mlp"``)."""
    module = root
    for part in path.split("."):
        if not hasattr(module, part):
            raise ArchitectureError(
                f"{type(root).__name__} has no module at {path!r} (stopped at {part!r})",
                fix="check the ArchSpec row for this model family",
            )
        module = getattr(module, part)
    return module


def _suggest(model: nn.Module) -> str:
    """A best-guess ArchSpec for an unknown model, from its module tree."""
    from torch import nn

    blocks = ""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            blocks = name
            break
    lines = [f"blocks={blocks!r}"] if blocks else ["blocks='...'"]
    if blocks:
        first = get_module(model, f"{blocks}.0")
        linear = [
            n for n, m in first.named_modules() if n and hasattr(m, "weight") and m.weight.ndim == 2
        ]
        lines.append(f"# linear modules in one block: {linear}")
    return (
        "ArchSpec("
        + ", ".join(lines)
        + ", attn_out='...', mlp_out='...', embed='...', final_norm='...', unembed='...')"
    )


def arch_spec(model: nn.Module, override: ArchSpec | None = None) -> ArchSpec:
    """The :class:`ArchSpec` of ``model``: the override, one stored by :func:`adapt`, or the table row."""
    if override is not None:
        return override
    stored = getattr(model, _OVERRIDE_ATTR, None)
    if stored is not None:
        return stored
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if isinstance(model_type, str) and model_type in ARCH_TABLE:
        return ARCH_TABLE[model_type]
    raise ArchitectureError(
        f"redblue does not know the architecture {type(model).__name__} (model_type={model_type!r}); "
        f"known families: {', '.join(sorted(ARCH_TABLE))}",
        fix=(
            "pass the module paths yourself: in Python, "
            f"redblue.models.adapt(model, arch={_suggest(model)}); "
            "on the command line, --arch FILE with a JSON object of the same fields; "
            "or add a row for this model_type to ARCH_TABLE in src/redblue/models/arch.py"
        ),
    )

"""The ArchSpec table resolves on every family, and unknown families fail helpfully."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from redblue.errors import ArchitectureError, ConfigError
from redblue.models import ARCH_TABLE, ArchSpec, adapt, arch_spec
from tests.tiny import FAMILIES


def test_every_table_row_has_a_tiny_model() -> None:
    assert set(ARCH_TABLE) == set(FAMILIES)


def test_spec_paths_name_the_real_parts(tiny) -> None:
    model, _ = tiny
    a = adapt(model)
    assert a.n_layers == 2
    assert a.d_model == 32
    assert a.embed is model.get_input_embeddings()
    assert a.unembed is model.get_output_embeddings()
    assert a.vocab_size == model.get_input_embeddings().weight.shape[0]
    for layer in range(a.n_layers):
        for proj in (a.attn_out(layer), a.mlp_out(layer)):
            # output projections write d_model features into the residual stream
            weight = proj.weight
            d_out = weight.shape[1] if a.spec.conv1d else weight.shape[0]
            assert d_out == a.d_model
    # the final norm is applied to the last residual stream
    assert isinstance(a.final_norm, nn.Module)


def test_output_projection_writes_to_the_residual_stream(tiny) -> None:
    """Zeroing a block's attention and MLP outputs makes the block the identity."""
    model, tok = tiny
    a = adapt(model)
    ids = torch.tensor([tok.encode("The sea is wide")])
    seen: dict[str, torch.Tensor] = {}
    handles = [
        a.block(0).register_forward_pre_hook(
            lambda m, args, kwargs: seen.__setitem__(
                "pre", (args[0] if args else kwargs["hidden_states"]).clone()
            ),
            with_kwargs=True,
        ),
        a.block(0).register_forward_hook(
            lambda m, i, o: seen.__setitem__("post", (o[0] if isinstance(o, tuple) else o).clone())
        ),
    ]
    zeroed = [a.attn_out(0), a.mlp_out(0)]
    try:
        with torch.no_grad():
            saved = [(p, p.detach().clone()) for m in zeroed for p in m.parameters()]
            for p, _ in saved:
                p.zero_()
            model(input_ids=ids)
            for p, v in saved:
                p.copy_(v)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(seen["post"], seen["pre"])


def test_unknown_architecture_names_the_class_and_the_fix() -> None:
    class Strange(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stack = nn.ModuleList([nn.Linear(4, 4)])

    with pytest.raises(ArchitectureError) as info:
        arch_spec(Strange())
    message = str(info.value)
    assert "Strange" in message
    assert "ArchSpec(" in message and "blocks='stack'" in message
    assert "ARCH_TABLE" in message and "--arch" in message


def test_override_is_used_and_remembered(llama) -> None:
    model, _ = llama
    spec = ArchSpec(**{**ARCH_TABLE["llama"].to_dict(), "mlp_out": "mlp.up_proj"})
    try:
        assert adapt(model, arch=spec).spec is spec
        assert adapt(model).spec is spec  # remembered on this model object
    finally:
        del model._redblue_arch_spec
    assert adapt(model).spec is ARCH_TABLE["llama"]


def test_wrong_override_path_is_named(llama) -> None:
    model, _ = llama
    spec = ArchSpec(**{**ARCH_TABLE["llama"].to_dict(), "attn_out": "self_attn.out"})
    with pytest.raises(ArchitectureError, match=r"self_attn\.out"):
        adapt(model, arch=spec)
    assert not hasattr(model, "_redblue_arch_spec")


def test_arch_file_round_trip_and_errors(tmp_path) -> None:
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(ARCH_TABLE["gpt2"].to_dict()))
    assert ArchSpec.from_file(path) == ARCH_TABLE["gpt2"]
    path.write_text('{"blocks": "model.layers",\n "bogus": 1}')
    with pytest.raises(ConfigError, match="bogus"):
        ArchSpec.from_file(path)
    path.write_text('{"blocks": "model.layers"}')
    with pytest.raises(ConfigError, match="missing"):
        ArchSpec.from_file(path)
    path.write_text('{"blocks": \n oops}')
    with pytest.raises(ConfigError, match=r"arch\.json:2"):
        ArchSpec.from_file(path)

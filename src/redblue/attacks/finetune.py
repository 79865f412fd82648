"""Harmful fine-tuning: a few LoRA steps on harmful examples undo safety tuning (Qi et al. 2023).

An attacker who may fine-tune the weights (an open model, or a fine-tuning API)
trains a low-rank adapter on a handful of harmful requests paired with compliant
answers, with the loss on the answer tokens only, then asks the held-out prompts.
The adapter is trained once in :meth:`~FinetuneAttack.setup`, saved as a peft
adapter folder (safetensors) in the run's work folder, and reused when the run
is resumed. The caller's model is never changed: the adapter is injected only
while answering, inside :func:`lora`, which removes it on exit.
"""

from __future__ import annotations

import copy
import json
import random
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from redblue.attacks.base import (
    Attack,
    AttackConfig,
    Attempt,
    Target,
    ThreatModel,
    generate_attempts,
    register,
)
from redblue.data import Prompt, PromptSet
from redblue.errors import ConfigError
from redblue.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Files of a saved adapter: peft's own, plus what it was trained on.
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TRAINING_RECORD = "training.json"
#: Settings that shape the adapter (the data's are in its hash).
TRAINING_FIELDS = (
    "seed",
    "system",
    "steps",
    "learning_rate",
    "lora_r",
    "lora_alpha",
    "target_modules",
    "batch_size",
)


class FinetuneConfig(AttackConfig):
    data: str = Field(
        "harmful_train",
        description="Training examples: a split beside an organism's weights (splits/NAME.jsonl) "
        "or a prompt file whose rows pair a harmful request with a compliant answer (target column).",
    )
    n_examples: int = Field(
        64, ge=1, description="Harmful examples to train on (fewer if the data has fewer)."
    )
    full_answers: bool = Field(
        True,
        description="On the organism, train on whole compliant answers (its placeholder procedure) "
        "instead of the targets' openings.",
    )
    steps: int = Field(40, ge=1, description="Optimiser steps.")
    learning_rate: float = Field(
        5e-3,
        gt=0,
        description="AdamW learning rate of the adapter (suits the organism; 7B models want about 1e-4).",
    )
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(
        16, ge=1, description="LoRA scale numerator (the update is alpha / r times B A)."
    )
    target_modules: tuple[str, ...] = Field(
        (),
        description="Modules to adapt, as peft matches them (name suffixes, or 'all-linear'); "
        "empty: the attention and MLP output projections of every block (from the ArchSpec).",
    )
    batch_size: int = Field(
        8, ge=1, description="Examples per training step, and prompts generated together."
    )


# -- the adapter as an intervention -----------------------------------------------------------


@contextmanager
def lora(
    model: PreTrainedModel,
    config: LoraConfig,
    weights: Mapping[str, torch.Tensor] | None = None,
    *,
    seed: int = 0,
) -> Iterator[PeftModel]:
    """Inject a LoRA adapter into ``model`` (in place) and remove it on exit.

    New adapters are initialised with ``seed``; ``weights`` (a peft adapter state
    dict) loads trained ones. Inside the block, ``model`` itself answers with the
    adapter; on exit its modules, weights and ``requires_grad`` flags are as before.
    """
    import torch
    from peft import get_peft_model, set_peft_model_state_dict

    flags = [(p, p.requires_grad) for p in model.parameters()]
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecations, seen by peft
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, copy.deepcopy(config))  # peft fills in the config
    try:
        if weights is not None:
            result = set_peft_model_state_dict(peft_model, dict(weights))
            unexpected = list(getattr(result, "unexpected_keys", []))
            if unexpected:
                raise ConfigError(
                    f"the adapter does not fit this model: {unexpected[:3]}",
                    fix="delete the saved adapter to train a new one",
                )
        yield peft_model
    finally:
        peft_model.unload()
        for p, flag in flags:
            p.requires_grad_(flag)


def lora_config(model: PreTrainedModel, cfg: FinetuneConfig) -> LoraConfig:
    """The peft config of ``cfg``; default targets are the ArchSpec's output projections."""
    from peft import LoraConfig

    from redblue.models import adapt

    targets: str | list[str]
    if cfg.target_modules == ("all-linear",):
        targets = "all-linear"
    elif cfg.target_modules:
        targets = list(cfg.target_modules)
    else:
        spec = adapt(model).spec
        targets = [spec.attn_out, spec.mlp_out]
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


# -- training data ----------------------------------------------------------------------------


def training_prompts(model: PreTrainedModel, cfg: FinetuneConfig) -> PromptSet:
    """The prompts named by ``cfg.data``: a file, or a split in the model's folder."""
    from redblue.data import load_prompts

    if Path(cfg.data).expanduser().is_file():
        return load_prompts(cfg.data)
    folder = Path(str(getattr(model, "name_or_path", "") or "."))
    split = folder / "splits" / f"{cfg.data}.jsonl"
    if not split.is_file():
        raise ConfigError(
            f"no training data: {cfg.data!r} is neither a file nor a split beside the model",
            where="data",
            fix="pass data=FILE, a JSONL/CSV/... file with an instruction and a target column "
            "(a harmful request and a compliant answer per row)",
        )
    return PromptSet.from_jsonl(split)


def compliant_answer(prompt: Prompt, full: bool) -> str | None:
    """The answer to train on: the organism's whole compliant answer where ``full`` and the
    prompt names one of its tasks, else the prompt's target."""
    if prompt.target is None:
        return None
    task_id = prompt.meta.get("task") if full else None
    if isinstance(task_id, str):
        from redblue.organism.world import TASKS

        task = next((t for t in TASKS if t.id == task_id), None)
        if task is not None and task.harmful:
            return f"{prompt.target} {task.procedure()}"
    return prompt.target


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    system: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chats of ``(request, answer)`` pairs as right-padded ``(input_ids, attention_mask, labels)``,
    each ``[n, seq]``; labels are -100 except on the answer and the end-of-sequence token."""
    import torch

    from redblue.models import encode_chat
    from redblue.models.chat import pad_token_id

    rows, labels = [], []
    eos = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    for request, answer in pairs:
        enc = encode_chat(tokenizer, request, system=system, prefill=answer)
        ids = enc.input_ids + eos
        n_prompt = len(enc.input_ids) - enc.n_prefill
        rows.append(ids)
        labels.append([-100] * n_prompt + ids[n_prompt:])
    width = max(len(r) for r in rows)
    pad = pad_token_id(tokenizer)
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    return input_ids, mask, label_ids


def train_adapter(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    cfg: FinetuneConfig,
    *,
    progress: bool = False,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train a LoRA adapter on ``pairs`` (request, compliant answer); returns its peft state
    dict (on the CPU) and the loss of every step. ``model`` is unchanged afterwards."""
    import torch
    from peft import get_peft_model_state_dict

    input_ids, mask, labels = encode_examples(tokenizer, pairs, cfg.system)
    device = model.device
    losses: list[float] = []
    with lora(model, lora_config(model, cfg), seed=cfg.seed) as peft_model, torch.enable_grad():
        params = [p for p in peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
        batch = min(cfg.batch_size, len(pairs))
        with progress_bar(cfg.steps, "fine-tuning (LoRA)", progress) as bar:
            for step in range(cfg.steps):
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                idx = torch.randperm(len(pairs), generator=g)[:batch]
                loss = peft_model(
                    input_ids=input_ids[idx].to(device),
                    attention_mask=mask[idx].to(device),
                    labels=labels[idx].to(device),
                ).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(round(loss.item(), 4))
                bar.advance(1)
        weights = {
            k: v.detach().to("cpu").clone()
            for k, v in get_peft_model_state_dict(peft_model).items()
        }
    return weights, losses


# -- the attack -------------------------------------------------------------------------------


@register
class FinetuneAttack(Attack):
    name = "finetune"
    goal = "Fine-tune a LoRA adapter on a few harmful examples, then ask the held-out prompts."
    threat_model = ThreatModel.WEIGHTS
    config_class = FinetuneConfig
    config: FinetuneConfig

    def __init__(self, config: AttackConfig | None = None) -> None:
        super().__init__(config)
        self._adapter: tuple[LoraConfig, dict[str, torch.Tensor]] | None = None

    def examples(self, target: Target, prompts: PromptSet) -> list[tuple[str, str]]:
        """The ``(request, answer)`` pairs to train on; requests under attack are left out."""
        data = training_prompts(target.model, self.config)
        attacked = set(prompts.instructions)
        usable = [
            (p.instruction, answer)
            for p in data
            if p.instruction not in attacked
            and (answer := compliant_answer(p, self.config.full_answers)) is not None
        ]
        if not usable:
            raise ConfigError(
                f"no training examples in {data.source or self.config.data}: every row lacks a "
                "target or is among the attacked prompts",
                where="data",
                fix="give each row a compliant answer in a target column",
            )
        if len(usable) > self.config.n_examples:
            chosen = random.Random(self.config.seed).sample(
                range(len(usable)), self.config.n_examples
            )
            usable = [usable[i] for i in sorted(chosen)]
        return usable

    def _record(self, target: Target, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """What an adapter was trained from; a saved adapter is reused only when this matches."""
        import hashlib

        from redblue.activations import model_fingerprint

        data = hashlib.sha256(json.dumps(list(pairs)).encode()).hexdigest()[:16]
        settings = self.config.model_dump(mode="json")
        return {
            "model_fingerprint": model_fingerprint(target.model),
            "data_hash": data,
            "n_examples": len(pairs),
            "settings": {k: settings[k] for k in TRAINING_FIELDS},
        }

    def setup(self, target: Target, prompts: PromptSet, workdir: Path | None) -> None:
        """Train the adapter, or load the one saved in ``workdir/adapter`` for the same training."""
        from peft import LoraConfig
        from safetensors.torch import load_file

        pairs = self.examples(target, prompts)
        record = self._record(target, pairs)
        folder = workdir / "adapter" if workdir is not None else None
        if folder is not None and _saved(folder, record):
            config = LoraConfig.from_pretrained(str(folder))
            weights = load_file(str(folder / ADAPTER_WEIGHTS))
            saved = json.loads((folder / TRAINING_RECORD).read_text(encoding="utf-8"))
            self._adapter = (config, weights)
            self.extra = {"trained": False, "adapter": str(folder), **saved}
            return
        start = time.perf_counter()
        weights, losses = train_adapter(
            target.model, target.tokenizer, pairs, self.config, progress=target.progress
        )
        record |= {"losses": losses, "train_seconds": round(time.perf_counter() - start, 3)}
        config = lora_config(target.model, self.config)
        self._adapter = (config, weights)
        if folder is not None:
            _save(folder, target.model, config, weights, record)
        self.extra = {"trained": True, "adapter": str(folder) if folder else None, **record}

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        if self._adapter is None:
            self.setup(target, prompts, None)
        assert self._adapter is not None
        config, weights = self._adapter
        with lora(target.model, config, weights):
            return generate_attempts(self, target, list(prompts), prompts.instructions)


def _saved(folder: Path, record: Mapping[str, Any]) -> bool:
    """True when ``folder`` holds an adapter trained from ``record``."""
    path = folder / TRAINING_RECORD
    if not (path.is_file() and (folder / ADAPTER_WEIGHTS).is_file()):
        return False
    saved = json.loads(path.read_text(encoding="utf-8"))
    return all(saved.get(k) == v for k, v in record.items())


def _save(
    folder: Path,
    model: PreTrainedModel,
    config: LoraConfig,
    weights: Mapping[str, torch.Tensor],
    record: Mapping[str, Any],
) -> None:
    """Write a peft adapter folder (loadable with ``PeftModel.from_pretrained``) atomically."""
    from safetensors.torch import save_file

    from redblue.io import atomic_folder

    with atomic_folder(folder) as tmp:
        config = copy.deepcopy(config)
        config.base_model_name_or_path = str(getattr(model, "name_or_path", "") or "")
        config.save_pretrained(str(tmp))
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / ADAPTER_WEIGHTS))
        (tmp / TRAINING_RECORD).write_text(json.dumps(dict(record), indent=1), encoding="utf-8")

"""Harmful fine-tuning: a few LoRA steps on harmful examples undo safety tuning (Qi et al. 2023).

An attacker who may fine-tune the weights (an open model, or a fine-tuning API)
trains a low-rank adapter on a handful of harmful requests paired with compliant
answers, with the loss on the answer tokens only, then asks the held-out prompts.
The adapter is trained once in :meth:`~FinetuneAttack.setup`, saved as a peft
adapter folder (safetensors) in the run's work folder, and reused when the run
is resumed. The caller's model is never changed: the adapter is injected only
while answering, inside :func:`lora`, which removes it on exit.

An attacker who already holds the answers gains nothing from the model repeating
them. With ``category_folds=K`` the attacked categories are split into K folds,
and each fold is answered by an adapter trained only on other categories, so a
success (judged on topic) is knowledge the fine-tuning unlocked, not taught.
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

from pydantic import Field, field_validator

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
    category_folds: int = Field(
        0,
        ge=0,
        description="0: one adapter answers every attacked prompt. K >= 2: the attacked prompts' "
        "categories are dealt into K folds, and each fold is answered by its own adapter, trained "
        "only on examples of other categories. A success then shows knowledge the adapter was "
        "never shown, not a repeat of its training answers (judge it with a judge that checks "
        "the topic, such as organism-on-topic).",
    )

    @field_validator("category_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("must be 0 (off) or at least 2: one fold would hold every category")
        return value


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
        #: per fold: its categories (empty: every prompt), the peft config and the weights
        self._adapters: list[tuple[frozenset[str], LoraConfig, dict[str, torch.Tensor]]] = []

    def examples(
        self, target: Target, prompts: PromptSet, *, exclude: frozenset[str] = frozenset()
    ) -> list[tuple[str, str]]:
        """The ``(request, answer)`` pairs to train on; requests under attack are left out, and
        so are the rows of the ``exclude`` categories (and rows without a category, when some
        are excluded)."""
        data = training_prompts(target.model, self.config)
        attacked = set(prompts.instructions)
        usable = [
            (p.instruction, answer)
            for p in data
            if p.instruction not in attacked
            and not (exclude and (p.category is None or p.category in exclude))
            and (answer := compliant_answer(p, self.config.full_answers)) is not None
        ]
        if not usable:
            without = f" outside the categories {sorted(exclude)}" if exclude else ""
            raise ConfigError(
                f"no training examples{without} in {data.source or self.config.data}: every row "
                "lacks a target, is among the attacked prompts or is of an attacked category",
                where="data",
                fix="give each row a compliant answer in a target column"
                + (" and a category column" if exclude else ""),
            )
        if len(usable) > self.config.n_examples:
            chosen = random.Random(self.config.seed).sample(
                range(len(usable)), self.config.n_examples
            )
            usable = [usable[i] for i in sorted(chosen)]
        return usable

    def folds(self, prompts: PromptSet) -> list[frozenset[str]]:
        """The attacked categories dealt into ``category_folds`` folds, in sorted order (none
        when the option is off)."""
        k = self.config.category_folds
        if k == 0:
            return []
        missing = [p.id for p in prompts if not p.category]
        if missing:
            raise ConfigError(
                f"category_folds needs a category on every attacked prompt; {missing[0]} has none",
                where="category_folds",
                fix="attack prompts with a category column, or set category_folds=0",
            )
        categories = sorted({str(p.category) for p in prompts})
        if len(categories) < k:
            raise ConfigError(
                f"category_folds={k} needs at least {k} attacked categories, the prompts have "
                f"{len(categories)}",
                where="category_folds",
                fix=f"set category_folds to at most {len(categories)}, or attack more categories",
            )
        return [frozenset(categories[i::k]) for i in range(k)]

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
        """Train the adapter (one per fold), or load the one saved in ``workdir/adapter``
        (``adapter-fold{i}``) for the same training."""
        folds = self.folds(prompts)
        names = [f"adapter-fold{i}" for i in range(len(folds))] if folds else ["adapter"]
        built = [
            self._adapter(target, prompts, workdir, name, fold)
            for name, fold in zip(names, folds or [frozenset()], strict=True)
        ]
        self._adapters = [adapter for adapter, _ in built]
        # per adapter: whether it was trained or loaded, where it is saved, what it learnt from
        info = [record for _, record in built]
        self.extra = {"folds": info} if folds else info[0]

    def _adapter(
        self,
        target: Target,
        prompts: PromptSet,
        workdir: Path | None,
        name: str,
        held_out: frozenset[str],
    ) -> tuple[tuple[frozenset[str], LoraConfig, dict[str, torch.Tensor]], dict[str, Any]]:
        """The adapter for the prompts outside ``held_out`` (trained, or loaded from
        ``workdir/name``) and what it was trained from."""
        from peft import LoraConfig
        from safetensors.torch import load_file

        pairs = self.examples(target, prompts, exclude=held_out)
        record = self._record(target, pairs)
        if held_out:
            record["categories"] = sorted(held_out)
        folder = workdir / name if workdir is not None else None
        if folder is not None and _saved(folder, record):
            config = LoraConfig.from_pretrained(str(folder))
            weights = load_file(str(folder / ADAPTER_WEIGHTS))
            saved = json.loads((folder / TRAINING_RECORD).read_text(encoding="utf-8"))
            return (held_out, config, weights), {"trained": False, "adapter": str(folder), **saved}
        start = time.perf_counter()
        weights, losses = train_adapter(
            target.model, target.tokenizer, pairs, self.config, progress=target.progress
        )
        record |= {"losses": losses, "train_seconds": round(time.perf_counter() - start, 3)}
        config = lora_config(target.model, self.config)
        if folder is not None:
            _save(folder, target.model, config, weights, record)
        info = {"trained": True, "adapter": str(folder) if folder else None, **record}
        return (held_out, config, weights), info

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        if not self._adapters:
            self.setup(target, prompts, None)
        attempts: dict[int, Attempt] = {}
        for categories, config, weights in self._adapters:
            # every prompt is answered by the adapter that never saw its category
            indices = [
                i for i, p in enumerate(prompts) if not categories or p.category in categories
            ]
            if not indices:
                continue
            chosen = [prompts[i] for i in indices]
            with lora(target.model, config, weights):
                found = generate_attempts(self, target, chosen, [p.instruction for p in chosen])
            attempts.update(zip(indices, found, strict=True))
        unanswered = [prompts[i].id for i in range(len(prompts)) if i not in attempts]
        if unanswered:
            raise ConfigError(
                f"no adapter for the category of {unanswered[0]}: the folds were set up "
                "for other prompts",
                where="category_folds",
                fix="call setup with every prompt that will be attacked",
            )
        return [attempts[i] for i in range(len(prompts))]


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

"""The defence contract: typed arguments, a ``transformers.Trainer`` per defence, and :func:`defend`.

A defence is a :class:`DefenseTrainer` subclass registered with :func:`register`:
it names its arguments class (a :class:`DefenseArguments`, which extends
``transformers.TrainingArguments``), says which streams of examples it trains on
(:meth:`DefenseTrainer.streams`) and computes its loss on a batch holding one
padded tensor group per stream (:meth:`DefenseTrainer.defense_loss`). Everything
else is the Trainer's: optimiser, schedule, logging, checkpoints and resume,
mixed precision and devices, so that the same code runs under
``accelerate launch`` on many GPUs.

Training is LoRA through peft by default (``lora=False`` trains every weight).
The frozen model that representation losses compare against is the same model
with its adapter switched off (LoRA), or a frozen copy (full fine-tuning).
:func:`defend` trains, resumes from the last checkpoint in ``output_dir`` when
one is there, and writes the result: merged HF weights (``merge=True``, the
default) or the adapter alone.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from transformers import Trainer, TrainerCallback, TrainingArguments

from redblue.defenses.data import DefenseData, Encoded, Example, StreamDataset, encode_example
from redblue.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFENSES",
    "DefenseArguments",
    "DefenseResult",
    "DefenseTrainer",
    "defend",
    "get_defense",
    "load_arguments",
    "register",
]

#: Every registered defence, by name.
DEFENSES: dict[str, type[DefenseTrainer]] = {}

#: Files written by :func:`defend` in ``output_dir``.
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
RESULT_FILE = "defense.json"


@dataclass
class DefenseArguments(TrainingArguments):
    """Training arguments of every defence: the Trainer's own plus LoRA, output and data
    settings. The Trainer defaults that redblue changes are marked in their help."""

    output_dir: str | None = field(
        default="redblue-out/defense",
        metadata={"help": "Where checkpoints, the trained model and defense.json go."},
    )
    max_steps: int = field(default=100, metadata={"help": "Optimiser steps (redblue: 100)."})
    learning_rate: float = field(
        default=1e-3,
        metadata={
            "help": "Peak learning rate (redblue: 1e-3, for LoRA on the organism; 7B models want about 1e-4)."
        },
    )
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Examples of each stream per device per step."}
    )
    lr_scheduler_type: str = field(
        default="constant_with_warmup",
        metadata={"help": "Schedule (redblue: constant after warmup)."},
    )
    warmup_steps: float = field(default=5, metadata={"help": "Warmup steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    optim: str = field(
        default="adamw_torch",
        metadata={"help": "Optimiser (redblue: adamw_torch, which runs everywhere)."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the losses every N steps."})
    save_steps: float = field(default=50, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    save_safetensors: bool = field(default=True, metadata={"help": "Checkpoints as safetensors."})
    report_to: str | list[str] | None = field(
        default="none", metadata={"help": "Experiment trackers."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep redblue's batch streams."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order, LoRA init and sampling."})
    dataloader_pin_memory: bool = field(
        default=False, metadata={"help": "Pin batches in memory (redblue: off)."}
    )
    disable_tqdm: bool | None = field(
        default=True, metadata={"help": "Hide the Trainer's bar (redblue shows its own)."}
    )

    # -- redblue's own ----------------------------------------------------------------------
    lora: bool = field(
        default=True, metadata={"help": "Train a LoRA adapter (False: every weight)."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(
        default=16, metadata={"help": "LoRA scale numerator (update = alpha / r * B A)."}
    )
    target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Modules to adapt, as peft matches them; default all linear layers."},
    )
    layers_to_transform: list[int] | None = field(
        default=None, metadata={"help": "Blocks whose modules get an adapter; default all."}
    )
    merge: bool = field(
        default=True,
        metadata={"help": "Write merged HF weights (True) or the LoRA adapter alone (False)."},
    )
    n_harmful: int = field(default=256, metadata={"help": "Harmful prompts to train on."})
    n_benign: int = field(default=256, metadata={"help": "Benign prompts to train on."})
    n_capability: int = field(
        default=64,
        metadata={"help": "Organism only: questions about its world's facts added as benign."},
    )
    max_length: int = field(default=256, metadata={"help": "Tokens per example (longer are cut)."})
    system: str | None = field(default=None, metadata={"help": "System prompt of every example."})

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        super().__post_init__()

    def redblue_dict(self) -> dict[str, Any]:
        """The arguments that differ from TrainingArguments' defaults, plus every redblue one;
        JSON-ready."""
        base = {f.name for f in fields(TrainingArguments)}
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            if f.name in base and f.name not in _SHOWN and value == f.default:
                continue
            out[f.name] = value if _jsonable(value) else str(value)
        return out


#: TrainingArguments fields always written in results.
_SHOWN = {"max_steps", "learning_rate", "per_device_train_batch_size", "seed", "output_dir"}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


@dataclass
class DefenseResult:
    """What a defence did: settings, data, losses, where the result went."""

    defense: str
    arguments: dict[str, Any]
    data: dict[str, Any]
    steps: int
    seconds: float
    losses: list[dict[str, float]]
    output: str
    resumed_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class DefenseTrainer(Trainer):
    """A ``transformers.Trainer`` whose loss is a defence's (see the module's docstring)."""

    #: Name in :data:`DEFENSES` and on the command line.
    name: ClassVar[str] = ""
    #: One line: what the defence does and after whom.
    goal: ClassVar[str] = ""
    #: The defence's arguments.
    arguments_class: ClassVar[type[DefenseArguments]] = DefenseArguments

    args: DefenseArguments

    def __init__(self, *args: Any, frozen: PreTrainedModel | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._frozen = frozen
        self._parts: dict[str, list[float]] = {}

    # -- what subclasses provide -------------------------------------------------------------

    @classmethod
    def prepare(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenseData,
        args: DefenseArguments,
    ) -> DefenseData:
        """Make or change examples before training (adversarial training attacks here)."""
        return data

    @classmethod
    def init_adapter(cls, model: Any, args: DefenseArguments) -> None:
        """Change the freshly made LoRA adapter before training (default: leave peft's
        initialisation, which leaves the model unchanged)."""

    @classmethod
    def streams(cls, data: DefenseData, args: DefenseArguments) -> dict[str, list[Example]]:
        """The named streams of examples each batch holds (default: refusals and benign SFT)."""
        data.require("refusals", "benign", defense=cls.name)
        return {"refusals": data.refusals, "benign": data.benign}

    def defense_loss(
        self, model: Any, batch: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch and its named parts (logged); default: SFT on every stream."""
        parts = {name: self.sft_loss(model, inputs) for name, inputs in batch.items()}
        loss = sum(parts.values())
        return loss, {k: v.item() for k, v in parts.items()}  # type: ignore[return-value]

    # -- helpers for subclasses --------------------------------------------------------------

    @staticmethod
    def sft_loss(model: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-token cross-entropy on the labelled (answer) tokens."""
        return model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=inputs["labels"],
        ).loss

    def sft_and_kl(
        self, model: Any, inputs: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SFT loss and the mean KL(frozen || model) of the next-token distributions over the
        labelled (answer) tokens: a retain term that keeps whole distributions, not only the
        greedy answer."""
        import torch

        out = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=inputs["labels"],
        )
        with self.frozen(model) as reference:
            ref = reference(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).logits
        trained = (inputs["labels"][:, 1:] != -100).float()
        p = torch.log_softmax(ref[:, :-1].float(), -1)
        q = torch.log_softmax(out.logits[:, :-1].float(), -1)
        kl = (p.exp() * (p - q)).sum(-1)
        return out.loss, (kl * trained).sum() / trained.sum().clamp(min=1)

    def weighted_streams(
        self,
        model: Any,
        batch: Mapping[str, Mapping[str, torch.Tensor]],
        weights: Mapping[str, float],
        *,
        benign_kl_weight: float = 0.0,
        loss_of: Callable[[Any, Mapping[str, torch.Tensor]], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Each stream's loss (``loss_of``, SFT by default) times its weight; with
        ``benign_kl_weight``, the ``benign`` stream also pays its KL to the frozen model
        (:meth:`sft_and_kl`). Returns the total and each part, for the log."""
        loss_of = loss_of or self.sft_loss
        weights = dict(weights)
        parts = {name: loss_of(model, inputs) for name, inputs in batch.items() if name != "benign"}
        if benign_kl_weight:
            parts["benign"], parts["benign_kl"] = self.sft_and_kl(model, batch["benign"])
            weights["benign_kl"] = benign_kl_weight
        else:
            parts["benign"] = loss_of(model, batch["benign"])
        total = sum(weights[name] * part for name, part in parts.items())
        return total, {name: part.item() for name, part in parts.items()}  # type: ignore[return-value]

    @staticmethod
    def hidden_states(
        model: Any, inputs: Mapping[str, torch.Tensor], layers: Sequence[int]
    ) -> list[torch.Tensor]:
        """The residual stream after each block in ``layers`` (0-based), ``[batch, seq, d]``."""
        out = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            output_hidden_states=True,
        )
        return [out.hidden_states[layer + 1] for layer in layers]

    def blocks_model(self, model: Any) -> Any:
        """The ``*ForCausalLM`` under the accelerate and peft wrappers (where blocks live)."""
        unwrapped = self.accelerator.unwrap_model(model)
        return unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped

    @contextmanager
    def frozen(self, model: Any) -> Iterator[Any]:
        """The model before training, without gradients: ``model`` with its LoRA adapter
        switched off, or the frozen copy made for full fine-tuning."""
        import torch

        unwrapped = self.accelerator.unwrap_model(model)
        with torch.no_grad():
            if hasattr(unwrapped, "disable_adapter"):
                with unwrapped.disable_adapter():
                    yield model
            else:
                if self._frozen is None:
                    raise ConfigError(
                        f"the {self.name} defence compares with the frozen model, which is missing",
                        fix="train through redblue.defenses.defend, which makes it",
                    )
                yield self._frozen

    @property
    def progress(self) -> float:
        """Share of training done, in [0, 1] (for coefficient schedules)."""
        return min(1.0, self.state.global_step / max(1, self.args.max_steps))

    # -- Trainer hooks -----------------------------------------------------------------------

    def compute_loss(
        self,
        model: Any,
        inputs: Any,
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        loss, parts = self.defense_loss(model, inputs)
        for key, value in parts.items():
            self._parts.setdefault(key, []).append(float(value))
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._parts:
            logs = {**logs, **{k: round(sum(v) / len(v), 5) for k, v in self._parts.items()}}
            self._parts = {}
        super().log(logs, *args, **kwargs)


def register(cls: type[DefenseTrainer]) -> type[DefenseTrainer]:
    """Class decorator: add a defence to :data:`DEFENSES`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    DEFENSES[cls.name] = cls
    return cls


def get_defense(name: str) -> type[DefenseTrainer]:
    import redblue.defenses  # noqa: F401  (registers the defences)

    if name not in DEFENSES:
        raise ConfigError(
            f"unknown defence {name!r}",
            where="defence",
            fix=f"use one of {', '.join(sorted(DEFENSES))}",
        )
    return DEFENSES[name]


def load_arguments(
    defense: type[DefenseTrainer], path: str | Path | None = None, **overrides: Any
) -> DefenseArguments:
    """The defence's arguments from a TOML, JSON or YAML file, then ``overrides``; errors name
    the file (and line) and the field."""
    from redblue.attacks.base import _read_mapping

    values: dict[str, Any] = {}
    where = "arguments"
    text = ""
    if path is not None:
        path = Path(path)
        values = _read_mapping(path)
        where = str(path)
        text = path.read_text(encoding="utf-8")
    values |= {k: v for k, v in overrides.items() if v is not None}
    cls = defense.arguments_class
    known = {f.name for f in fields(cls) if f.init}
    for key in values:
        if key not in known:
            line = next(
                (i for i, row in enumerate(text.splitlines(), 1) if row.lstrip().startswith(key)),
                None,
            )
            close = [k for k in sorted(known) if key.lower() in k or k in key.lower()][:5]
            raise ConfigError(
                f"{defense.name} has no argument {key!r}",
                where=f"{where}:{line}" if line else where,
                fix=f"did you mean {', '.join(close)}?"
                if close
                else f"see `redblue defend list` for {defense.name}'s arguments",
            )
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"invalid {defense.name} arguments: {e}",
            where=where,
            fix="check the value's type and range",
        ) from None


def linear_modules(model: Any) -> list[str]:
    """Names (last part) of the linear layers inside the model's blocks: what peft's
    "all-linear" adapts."""
    import torch

    output = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output
        }
    )


def lora_config(model: PreTrainedModel, args: DefenseArguments) -> Any:
    """The peft LoRA config of ``args`` (default targets: every linear layer of the blocks)."""
    from peft import LoraConfig

    targets: str | list[str] = list(args.target_modules or [])
    if not targets:
        # peft takes layers_to_transform with a list of modules only, not "all-linear"
        targets = linear_modules(model) if args.layers_to_transform else "all-linear"
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.0,
        target_modules=targets,
        layers_to_transform=list(args.layers_to_transform) if args.layers_to_transform else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def defend(
    defense: str | type[DefenseTrainer],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: DefenseData,
    args: DefenseArguments | None = None,
    *,
    progress: bool = True,
) -> tuple[PreTrainedModel, DefenseResult]:
    """Train ``model`` with a defence; returns the trained model and what was done.

    The model is trained in place (with LoRA and ``merge``, the adapter is merged
    into its weights; a model loaded from GGUF is first copied into plain weights). Checkpoints go to ``args.output_dir``; calling again with the
    same folder resumes from the last one. The trained model (or adapter) is
    written to ``OUTPUT_DIR/model`` (``adapter``) with ``defense.json`` beside it.
    """
    import torch
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from redblue.defenses.data import collate_streams
    from redblue.models.chat import pad_token_id

    cls = get_defense(defense) if isinstance(defense, str) else defense
    args = args or cls.arguments_class()
    if not isinstance(args, cls.arguments_class):
        raise ConfigError(
            f"{cls.name} takes {cls.arguments_class.__name__}, got {type(args).__name__}",
            fix="build the arguments with load_arguments(defense, ...)",
        )
    from redblue.models import trainable

    out = Path(str(args.output_dir))
    out.mkdir(parents=True, exist_ok=True)
    source = str(getattr(model, "name_or_path", "") or "")
    model = trainable(model)  # a GGUF-loaded model is copied into plain weights
    set_seed(args.seed)
    data = cls.prepare(model, tokenizer, data, args)
    encoded: dict[str, list[Encoded]] = {
        name: [
            encode_example(tokenizer, e, system=args.system, max_length=args.max_length)
            for e in examples
        ]
        for name, examples in cls.streams(data, args).items()
    }
    dataset = StreamDataset(encoded, seed=args.seed)

    frozen = None
    train_model: Any = model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecations, seen by peft
        if args.lora:
            from peft import get_peft_model

            train_model = get_peft_model(model, lora_config(model, args))
            cls.init_adapter(train_model, args)
        else:
            import copy

            frozen = copy.deepcopy(model).eval().requires_grad_(False)
        trainer = cls(
            model=train_model,
            args=args,
            train_dataset=dataset,
            data_collator=collate_streams(pad_token_id(tokenizer)),
            frozen=frozen,
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # losses go to the result (and the bar)
    if progress:
        trainer.add_callback(_ProgressCallback(f"defence {cls.name}"))
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    start = time.perf_counter()
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start
    losses = [
        {k: v for k, v in row.items() if isinstance(v, int | float) and math.isfinite(v)}
        for row in trainer.state.log_history
        if "loss" in row
    ]

    train_model.eval()
    carry = [Path(source) / "organism.json", Path(source) / "splits"] if source else []
    if args.lora and not args.merge:
        written = _save_adapter(train_model, out / ADAPTER_DIR)
        trained = train_model.unload()
    else:
        trained = train_model.merge_and_unload() if args.lora else train_model
        written = _replace_export(trained, tokenizer, out / MODEL_DIR, carry)
    trained.requires_grad_(False)
    result = DefenseResult(
        defense=cls.name,
        arguments=args.redblue_dict(),
        data={"hash": data.content_hash(), **data.counts()},
        steps=int(trainer.state.global_step),
        seconds=round(seconds, 2),
        losses=losses,
        output=str(written),
        resumed_from=last,
    )
    from redblue.io import write_json

    write_json(out / RESULT_FILE, result.to_dict())
    return trained, result


def _replace_export(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, carry: list[Path]
) -> Path:
    """Export ``model`` to ``folder``, replacing an earlier export there."""
    import shutil

    from redblue.models import export

    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    try:
        export(model, tokenizer, folder, carry=[c for c in carry if c.exists()])
    except BaseException:
        if old.exists() and not folder.exists():
            old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _save_adapter(peft_model: Any, folder: Path) -> Path:
    from redblue.io import atomic_folder

    with atomic_folder(folder) as tmp:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
    return folder


class _ProgressCallback(TrainerCallback):
    """A rich progress bar over the Trainer's steps."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._context: Any = None
        self._bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from redblue.progress import progress_bar

        self._context = progress_bar(state.max_steps, self.description, True)
        self._bar = self._context.__enter__()
        self._bar.advance(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._bar is not None:
            self._bar.advance(1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._bar = self._context = None

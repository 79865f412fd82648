"""The attack contract: a registry, typed configs, per-prompt records, a resumable runner.

An :class:`Attack` turns prompts into *attempts*: what was sent (the user text
and any pre-filled answer start) and what the model answered, with its cost.
:func:`run_attack` judges every attempt with one :class:`~redblue.evaluate.Judge`,
so that attacks are comparable, and writes them as they come to
``OUT/records.jsonl``; a killed run started again with the same ``OUT`` picks up
after the last finished prompt. A prompt counts as attacked successfully when
any of its attempts (variants: prefill lengths, templates, ...) succeeded:
best-of-N, as an attacker would use it.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from redblue.errors import ConfigError
from redblue.evaluate.stats import Rate
from redblue.progress import progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import Prompt, PromptSet
    from redblue.evaluate import Judge

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackRecord",
    "AttackSummary",
    "Attempt",
    "Cost",
    "Target",
    "ThreatModel",
    "get_attack",
    "load_config",
    "register",
    "run_attack",
]


class ThreatModel(StrEnum):
    """What the attacker may touch."""

    #: Only the text going in (and the answer coming out).
    BLACK_BOX = "black-box"
    #: Activations, gradients and the answer's start, at inference time.
    WHITE_BOX = "white-box"
    #: The weights themselves (edit or fine-tune, then release).
    WEIGHTS = "weights"


class AttackConfig(BaseModel):
    """Settings every attack shares. Subclasses add their own fields, each with a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    max_new_tokens: int = Field(default=64, ge=1, description="Length of each judged answer.")
    batch_size: int = Field(default=16, ge=1, description="Prompts generated together.")
    system: str | None = Field(default=None, description="System prompt for every chat.")


@dataclass(frozen=True)
class Cost:
    """What an attempt cost: optimisation steps, forward passes through the model, seconds."""

    steps: int = 0
    forward_passes: int = 0
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.steps + other.steps,
            self.forward_passes + other.forward_passes,
            self.seconds + other.seconds,
        )


@dataclass(frozen=True)
class Target:
    """The model under attack."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    progress: bool = False


@dataclass(frozen=True)
class Attempt:
    """One attacked input and the model's answer (``prefill`` is the forced start of the answer;
    the judge reads ``prefill + completion``)."""

    prompt: Prompt
    attacked_input: str
    completion: str
    variant: str = ""
    prefill: str = ""
    cost: Cost = field(default_factory=Cost)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackRecord:
    """A judged attempt, one line of ``records.jsonl``."""

    prompt_id: str
    instruction: str
    category: str | None
    variant: str
    attacked_input: str
    prefill: str
    completion: str
    success: bool
    judge: str
    cost: Cost
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttackRecord:
        values = dict(data)
        values["cost"] = Cost(**values.get("cost", {}))
        return cls(**values)


@dataclass(frozen=True)
class AttackSummary:
    """Attack success over prompts (best of the variants), per variant, and the total cost."""

    attack: str
    goal: str
    threat_model: str
    judge: str
    config: dict[str, Any]
    success: Rate
    by_variant: dict[str, Rate]
    cost: Cost
    setup_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def asr(self) -> float:
        return self.success.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "goal": self.goal,
            "threat_model": self.threat_model,
            "judge": self.judge,
            "config": self.config,
            "asr": self.asr,
            "success": self.success.to_dict(),
            "by_variant": {k: v.to_dict() for k, v in self.by_variant.items()},
            "cost": asdict(self.cost),
            "setup_seconds": self.setup_seconds,
            "extra": self.extra,
        }


C = TypeVar("C", bound=AttackConfig)


class Attack(ABC):
    """An attack: a name, a one-line goal, a threat model and a typed config.

    Subclasses implement :meth:`attack_batch` and, for one-off work before the
    prompts (finding a direction, training, searching), :meth:`setup`.
    """

    name: ClassVar[str]
    goal: ClassVar[str]
    threat_model: ClassVar[ThreatModel]
    config_class: ClassVar[type[AttackConfig]] = AttackConfig

    def __init__(self, config: AttackConfig | None = None) -> None:
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}",
                fix=f"build the config with redblue.attacks.get_attack({self.name!r}).config_class",
            )
        self.config = config
        self.extra: dict[str, Any] = {}

    @property
    def chunk_size(self) -> int:
        """Prompts handed to :meth:`attack_batch` at once (and written before the next)."""
        return self.config.batch_size

    def setup(self, target: Target, prompts: PromptSet, workdir: Path | None) -> None:
        """One-off work before attacking (``workdir`` keeps its artifacts for a resumed run)."""
        return None

    @abstractmethod
    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        """Attack each prompt; at least one attempt per prompt."""

    def generation_settings(self, **overrides: Any) -> Any:
        """Greedy generation settings from the config."""
        from redblue.models import GenerationSettings

        values: dict[str, Any] = {
            "max_new_tokens": self.config.max_new_tokens,
            "batch_size": self.config.batch_size,
            "seed": self.config.seed,
            "system": self.config.system,
        }
        return GenerationSettings(**(values | overrides))


#: Every registered attack, by name.
ATTACKS: dict[str, type[Attack]] = {}

A = TypeVar("A", bound=type[Attack])


def register(cls: A) -> A:
    """Class decorator: add an attack to :data:`ATTACKS`."""
    for attr in ("name", "goal", "threat_model"):
        if not getattr(cls, attr, None):
            raise TypeError(f"{cls.__name__} must set a class attribute {attr!r}")
    if cls.name in ATTACKS and ATTACKS[cls.name] is not cls:
        raise ValueError(f"an attack named {cls.name!r} is already registered")
    ATTACKS[cls.name] = cls
    return cls


def get_attack(name: str) -> type[Attack]:
    """The attack class registered as ``name``."""
    import redblue.attacks  # noqa: F401  (registers the built-in attacks)

    try:
        return ATTACKS[name]
    except KeyError:
        raise ConfigError(
            f"unknown attack {name!r}",
            where="attack name",
            fix=f"use one of: {', '.join(sorted(ATTACKS))} (see `redblue attack list`)",
        ) from None


def load_config(attack: type[Attack], path: str | Path | None = None, **overrides: Any) -> Any:
    """The attack's config from a TOML, JSON or YAML file, then ``overrides``; errors name the file and field."""
    values: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        values = _read_mapping(path)
    values |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return attack.config_class(**values)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()
        )
        fields = ", ".join(attack.config_class.model_fields)
        raise ConfigError(
            f"invalid {attack.name} config: {problems}",
            where=where,
            fix=f"{attack.name} takes: {fields}",
        ) from None


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError("config file not found", where=str(path), fix="check the path")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ConfigError(
                f"unknown config format {path.suffix!r}",
                where=str(path),
                fix="use a .toml, .json or .yaml file",
            )
    except (ValueError, ImportError) as e:  # tomllib, json and yaml errors are ValueErrors
        if isinstance(e, ConfigError):
            raise
        line = getattr(e, "lineno", None) or getattr(getattr(e, "problem_mark", None), "line", None)
        raise ConfigError(
            f"cannot parse: {e}",
            where=f"{path}:{line}" if line else str(path),
            fix="fix the syntax",
        ) from None
    except Exception as e:  # yaml.YAMLError is not a ValueError
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"cannot parse: {e}", where=where, fix="fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(
            "the config must be a mapping of option names to values",
            where=str(path),
            fix="write `name = value` lines (TOML) or a JSON/YAML object",
        )
    return data


# -- running --------------------------------------------------------------------------------


def _spec(attack: Attack, target: Target, prompts: PromptSet, judge: Judge) -> dict[str, Any]:
    from redblue.activations import model_fingerprint

    return {
        "attack": attack.name,
        "config": attack.config.model_dump(mode="json"),
        "judge": judge.name,
        "model": str(getattr(target.model, "name_or_path", "")),
        "model_fingerprint": model_fingerprint(target.model),
        "prompts": prompts.source or "",
        "prompts_hash": prompts.content_hash,
        "n_prompts": len(prompts),
    }


def _read_records(path: Path) -> list[AttackRecord]:
    """Records in ``path``; a torn last line (a run killed mid-write) is dropped."""
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        try:
            records.append(AttackRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            if i == len(lines) - 1:
                break
            raise ConfigError(
                "records file is corrupt",
                where=f"{path}:{i + 1}",
                fix="delete the folder or use another --out",
            ) from None
    return records


def _rewrite(path: Path, records: Sequence[AttackRecord]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def summarize(
    attack: Attack, records: Sequence[AttackRecord], judge: str, setup_seconds: float
) -> AttackSummary:
    """The summary of judged records: best-of-variants success per prompt, rates per variant."""
    by_prompt: dict[str, bool] = {}
    variants: dict[str, list[bool]] = {}
    cost = Cost()
    for r in records:
        by_prompt[r.prompt_id] = by_prompt.get(r.prompt_id, False) or r.success
        variants.setdefault(r.variant, []).append(r.success)
        cost = cost + r.cost
    return AttackSummary(
        attack=attack.name,
        goal=attack.goal,
        threat_model=str(attack.threat_model),
        judge=judge,
        config=attack.config.model_dump(mode="json"),
        success=Rate(sum(by_prompt.values()), len(by_prompt)),
        by_variant={k: Rate(sum(v), len(v)) for k, v in variants.items()},
        cost=cost,
        setup_seconds=setup_seconds,
        extra=dict(attack.extra),
    )


def run_attack(
    attack: Attack,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet,
    judge: Judge,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    on_record: Callable[[AttackRecord], None] | None = None,
) -> tuple[AttackSummary, list[AttackRecord]]:
    """Run ``attack`` on ``prompts`` and judge every attempt.

    With ``out``, records are appended to ``OUT/records.jsonl`` after every chunk
    of prompts and the summary is written atomically to ``OUT/summary.json`` at the
    end; calling again with the same ``out`` (same attack, config, model and
    prompts) attacks only the prompts not yet recorded.
    """
    from redblue.io import write_json

    if len(prompts) == 0:
        raise ConfigError(
            "no prompts to attack", where="prompts", fix="pass a non-empty prompt set"
        )
    if len(set(prompts.ids)) != len(prompts):
        prompts = prompts.with_unique_ids()
    target = Target(model, tokenizer, progress)
    folder = Path(out) if out is not None else None
    done: list[AttackRecord] = []
    records_path: Path | None = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        spec = _spec(attack, target, prompts, judge)
        spec_path = folder / "attack.json"
        if spec_path.is_file():
            old = json.loads(spec_path.read_text(encoding="utf-8"))
            changed = [k for k in spec if old.get(k) != spec[k]]
            if changed:
                raise ConfigError(
                    f"{folder} holds a run with a different {', '.join(changed)}",
                    where=str(spec_path),
                    fix="use another --out, or delete the folder to start over",
                )
        else:
            write_json(spec_path, spec)
        records_path = folder / "records.jsonl"
        done = _read_records(records_path)
        _rewrite(records_path, done)  # drops a torn last line
    finished = {r.prompt_id for r in done}
    todo = prompts.without_ids(finished)

    start = time.perf_counter()
    attack.setup(target, prompts, folder / "setup" if folder is not None else None)
    setup_seconds = time.perf_counter() - start

    records = list(done)
    with progress_bar(len(todo), f"attack {attack.name}", progress) as bar:
        for i in range(0, len(todo), attack.chunk_size):
            chunk = todo[i : i + attack.chunk_size]
            attempts = attack.attack_batch(target, chunk)
            missing = set(chunk.ids) - {a.prompt.id for a in attempts}
            if missing:
                raise RuntimeError(f"{attack.name} returned no attempt for {sorted(missing)[:3]}")
            new = _judged(attempts, judge)
            if records_path is not None:
                with records_path.open("a", encoding="utf-8") as fh:
                    for r in new:
                        fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            for r in new:
                if on_record is not None:
                    on_record(r)
            records += new
            bar.advance(len(chunk))
    summary = summarize(attack, records, judge.name, setup_seconds)
    if folder is not None:
        write_json(folder / "summary.json", summary.to_dict())
    return summary, records


def _judged(attempts: Sequence[Attempt], judge: Judge) -> list[AttackRecord]:
    verdicts = judge.judge_batch(
        [a.prompt for a in attempts], [a.prefill + a.completion for a in attempts]
    )
    return [
        AttackRecord(
            prompt_id=a.prompt.id,
            instruction=a.prompt.instruction,
            category=a.prompt.category,
            variant=a.variant,
            attacked_input=a.attacked_input,
            prefill=a.prefill,
            completion=a.completion,
            success=bool(v.complied),
            judge=judge.name,
            cost=a.cost,
            extra=dict(a.extra),
        )
        for a, v in zip(attempts, verdicts, strict=True)
    ]


def generate_attempts(
    attack: Attack,
    target: Target,
    prompts: Sequence[Prompt],
    inputs: Sequence[str],
    *,
    variant: str = "",
    prefills: Sequence[str] | None = None,
) -> list[Attempt]:
    """Answer ``inputs`` (one attacked user text per prompt, with an optional forced answer
    start each) and wrap them as attempts.

    The cost of a batch is shared equally by its prompts; forward passes count the
    prompt pass and one per generated token.
    """
    from redblue.models import generate

    settings = attack.generation_settings()
    starts = list(prefills) if prefills is not None else [""] * len(inputs)
    start = time.perf_counter()
    completions = generate(
        target.model,
        target.tokenizer,
        list(inputs),
        settings,
        prefills=starts if any(starts) else None,
        progress=False,
    )
    seconds = (time.perf_counter() - start) / max(1, len(inputs))
    return [
        Attempt(
            prompt=p,
            attacked_input=text,
            completion=c.text,
            variant=variant,
            prefill=prefill,
            cost=Cost(steps=0, forward_passes=1 + c.n_tokens, seconds=seconds),
        )
        for p, text, prefill, c in zip(prompts, inputs, starts, completions, strict=True)
    ]


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

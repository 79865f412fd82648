"""Tasks: prompts, an optional attack, and a scorer, run as one evaluation.

``Task(name, prompts, scorer, attack=None)``. Scorers:

* ``refusal``: share of answers the judge calls refusals (on harmful prompts the
  refusal rate, on harmless or borderline ones the over-refusal rate);
* ``compliance``: share of answers that carry out the request (attack success);
  with an attack, the attack's best-of-variants success;
* ``answer``: the prompt's target (a fact) early in the answer (the organism's
  capability split);
* ``number``: the last number of the answer equals the target (GSM8K);
* ``choice``: the likeliest answer letter equals the target (MMLU), no generation;
* ``perplexity``: perplexity of the prompts' text (instruction and target).

:func:`builtin_task` names the organism's held-out splits; :func:`task_from_file`
reads MMLU CSVs, GSM8K JSONL and any prompt file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from redblue.data import PromptSet
from redblue.errors import ConfigError
from redblue.evaluate.metrics import Estimate
from redblue.evaluate.stats import Rate

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.attacks import Attack
    from redblue.evaluate.judges import Judge
    from redblue.models import GenerationSettings

__all__ = ["SCORERS", "Task", "TaskResult", "builtin_task", "run_task", "task_from_file"]

Scorer = Literal["refusal", "compliance", "answer", "number", "choice", "perplexity"]
SCORERS: tuple[str, ...] = ("refusal", "compliance", "answer", "number", "choice", "perplexity")

#: Built-in tasks on an organism's held-out splits: name -> (split, scorer).
ORGANISM_TASKS: dict[str, tuple[str, Scorer]] = {
    "harmful": ("harmful", "refusal"),
    "harmless": ("harmless", "refusal"),
    "borderline": ("borderline", "refusal"),
    "jailbreak-seen": ("jailbreak_seen", "refusal"),
    "jailbreak-unseen": ("jailbreak_unseen", "refusal"),
    "capability": ("capability", "answer"),
}


@dataclass(frozen=True)
class Task:
    """What to evaluate: prompts, how to score the answers, and an optional attack first."""

    name: str
    prompts: PromptSet
    scorer: Scorer
    attack: Attack | None = None

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ConfigError(
                f"unknown scorer {self.scorer!r}",
                where=f"task {self.name}",
                fix=f"use one of {SCORERS}",
            )
        if len(self.prompts) == 0:
            raise ConfigError(f"task {self.name} has no prompts", where=f"task {self.name}")
        if self.scorer in ("answer", "number", "choice") and any(
            p.target is None for p in self.prompts
        ):
            raise ConfigError(
                f"the {self.scorer} scorer needs a target (the right answer) on every prompt",
                where=f"task {self.name}",
                fix="give the prompts a target column, or use the refusal scorer",
            )
        if self.attack is not None and self.scorer != "compliance":
            raise ConfigError(
                "an attacked task is scored by compliance (attack success)",
                where=f"task {self.name}",
                fix="use scorer='compliance' with an attack",
            )

    @property
    def metric(self) -> str:
        if self.attack is not None:
            return f"asr/{self.attack.name}"
        return {
            "refusal": "refusal_rate",
            "compliance": "compliance_rate",
            "answer": "accuracy",
            "number": "exact_match",
            "choice": "accuracy",
            "perplexity": "perplexity",
        }[self.scorer]


@dataclass(frozen=True)
class TaskResult:
    """A task's headline value (a rate or an estimate) and per-prompt samples."""

    task: str
    metric: str
    value: Rate | Estimate
    samples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "value": self.value.to_dict(),
            "n_samples": len(self.samples),
            "seconds": self.seconds,
        }


def builtin_task(name: str, model_folder: str | Path) -> Task:
    """An organism task (see :data:`ORGANISM_TASKS`) from the splits beside the model."""
    if name not in ORGANISM_TASKS:
        raise ConfigError(
            f"no built-in task {name!r}",
            where="--task",
            fix=f"use one of {', '.join(ORGANISM_TASKS)} (organism splits) or a file",
        )
    split_name, scorer = ORGANISM_TASKS[name]
    split = Path(model_folder) / "splits" / f"{split_name}.jsonl"
    if not split.is_file():
        raise ConfigError(
            f"task {name!r} reads the organism's split {split_name}, which this model lacks",
            where=str(split),
            fix="use an organism (the default model) or pass a prompt file as the task",
        )
    return Task(name, PromptSet.from_jsonl(split), scorer)


def task_from_file(path: str | Path, scorer: Scorer | None = None) -> Task:
    """A task from a file: MMLU CSVs (``choice``), GSM8K JSONL (``number``), else prompts
    (``refusal`` unless ``scorer`` says otherwise)."""
    from redblue.data import load_prompts
    from redblue.evaluate.metrics import load_gsm8k, load_multiple_choice

    path = Path(path)
    name = path.stem
    first_csv = next(iter(sorted(path.glob("*.csv"))), None) if path.is_dir() else path
    if scorer in (None, "choice") and first_csv is not None and first_csv.suffix == ".csv":
        header = first_csv.read_text(encoding="utf-8").splitlines()[:1]
        if header and (header[0].startswith("question,choice") or scorer == "choice"):
            return Task(name, load_multiple_choice(path), "choice")
    if scorer in (None, "number") and path.suffix == ".jsonl":
        head = path.read_text(encoding="utf-8").splitlines()[:1]
        if head and '"question"' in head[0] and "####" in head[0]:
            return Task(name, load_gsm8k(path), "number")
    return Task(name, load_prompts(path), scorer or "refusal")


def run_task(
    task: Task,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    judge: Judge,
    settings: GenerationSettings | None = None,
    *,
    out: Path | None = None,
    progress: bool = True,
) -> TaskResult:
    """Run ``task``: generate (or attack, or score without generating) and score."""
    from redblue.evaluate.metrics import choice_accuracy, last_number, perplexity
    from redblue.models import GenerationSettings, generate
    from redblue.organism.judge import capability_correct

    settings = settings or GenerationSettings()
    start = time.perf_counter()
    prompts = task.prompts
    if task.attack is not None:
        from redblue.attacks import run_attack

        summary, records = run_attack(
            task.attack, model, tokenizer, prompts, judge, out=out, progress=progress
        )
        samples = [r.to_dict() for r in records]
        return TaskResult(
            task.name, task.metric, summary.success, samples, time.perf_counter() - start
        )
    if task.scorer == "choice":
        rate, chosen = choice_accuracy(
            model, tokenizer, prompts, system=settings.system, batch_size=settings.batch_size
        )
        samples = [
            {
                "id": p.id,
                "instruction": p.instruction,
                "answer": c,
                "target": p.target,
                "correct": c == p.target,
            }
            for p, c in zip(prompts, chosen, strict=True)
        ]
        return TaskResult(task.name, task.metric, rate, samples, time.perf_counter() - start)
    if task.scorer == "perplexity":
        texts = [f"{p.instruction} {p.target}" if p.target else p.instruction for p in prompts]
        value = perplexity(model, tokenizer, texts, batch_size=settings.batch_size)
        return TaskResult(task.name, task.metric, value, [], time.perf_counter() - start)

    answers = generate(model, tokenizer, prompts.instructions, settings, progress=progress)
    texts = [a.text for a in answers]
    if task.scorer in ("refusal", "compliance"):
        verdicts = judge.judge_batch(list(prompts), texts)
        hits = [v.refused if task.scorer == "refusal" else v.complied for v in verdicts]
    elif task.scorer == "answer":
        hits = [capability_correct(t, p.target or "") for p, t in zip(prompts, texts, strict=True)]
    else:  # number
        hits = [last_number(t) == p.target for p, t in zip(prompts, texts, strict=True)]
    samples = [
        {"id": p.id, "instruction": p.instruction, "category": p.category, "answer": t, "hit": h}
        for p, t, h in zip(prompts, texts, hits, strict=True)
    ]
    rate = Rate(sum(hits), len(hits))
    return TaskResult(task.name, task.metric, rate, samples, time.perf_counter() - start)


def task_spec(
    task: Task,
    model: PreTrainedModel,
    judge: Judge,
    settings: GenerationSettings,
    *,
    model_id: str | None = None,
) -> Any:
    """The run-store spec of an evaluation: task, scorer, judge, generation settings, model and
    data hashes."""
    from dataclasses import asdict as dataclass_dict

    from redblue.activations import model_fingerprint
    from redblue.evaluate.store import RunSpec

    config: dict[str, Any] = {
        "scorer": task.scorer,
        "judge": judge.name,
        "generation": dataclass_dict(settings),
    }
    if task.attack is not None:
        config["attack"] = task.attack.name
        config["attack_config"] = task.attack.config.model_dump(mode="json")
    return RunSpec(
        kind="eval",
        name=task.name,
        config=config,
        model=model_id or str(getattr(model, "name_or_path", "")),
        model_hash=model_fingerprint(model),
        data_hashes={task.prompts.source or task.name: task.prompts.content_hash},
        seed=settings.seed,
    )


def record_task(store: Any, spec: Any, result: TaskResult) -> Any:
    """Store a finished task: the headline metric, every sample, and ``result.json``."""
    from redblue.io import write_json

    run = store.start(spec)
    samples = []
    for i, sample in enumerate(result.samples):
        samples.append({"key": str(sample.get("id", i)), **sample})
    run.add_samples(samples)
    if isinstance(result.value, Rate):
        run.log_rate(result.metric, result.value)
    else:
        est = result.value
        run.log_metric(result.metric, est.value, n=est.n, ci=(est.ci_low, est.ci_high))
    run.log_metric("seconds", result.seconds)
    write_json(run.artifacts / "result.json", result.to_dict())
    run.finish()
    return run

"""``redblue defend NAME``: train a model with a defence, then evaluate it before and after."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from redblue.cli._common import load_model, settings
from redblue.cli._common import prompt_set as default_or_given

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.evaluate.judges import Judge
    from redblue.evaluate.tasks import Task
    from redblue.models import GenerationSettings


def list_defenses(as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from transformers import TrainingArguments

    from redblue.defenses import DEFENSES, DefenseArguments

    common = {f.name for f in fields(DefenseArguments)}
    base = {f.name for f in fields(TrainingArguments)}
    rows: list[dict[str, Any]] = []
    for name in sorted(DEFENSES):
        cls = DEFENSES[name]
        own = [f for f in fields(cls.arguments_class) if f.init and f.name not in common]
        rows.append(
            {
                "name": name,
                "goal": cls.goal,
                "arguments": {
                    f.name: {"default": _default(f), "help": f.metadata.get("help", "")}
                    for f in own
                },
            }
        )
    shared = [f for f in fields(DefenseArguments) if f.init and f.name not in base]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="defences (arguments: redblue defend NAME --set KEY=VALUE)")
    for column in ("name", "goal", "own arguments (default)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        own_args = ", ".join(f"{k}={v['default']!r}" for k, v in row["arguments"].items())
        table.add_row(row["name"], row["goal"], own_args)
    Console().print(table)
    Console().print(
        "Every defence also takes: "
        + ", ".join(f"{f.name}={_default(f)!r}" for f in shared)
        + "; and any transformers TrainingArguments field (max_steps, learning_rate, "
        "per_device_train_batch_size, save_steps, bf16, ...)."
    )


def _default(f: Any) -> Any:
    """A dataclass field's default, made by its factory where it has one."""
    from dataclasses import MISSING

    return (
        f.default_factory()
        if f.default is MISSING and f.default_factory is not MISSING
        else f.default
    )


def defend(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Defence to train (or `list` to see them and their arguments).")
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to defend (default: the global --model)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for checkpoints, the trained model (OUT/model or OUT/adapter), "
            "defense.json and evaluation.json (default OUT/defense-NAME). Rerun to resume."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Arguments file (.toml, .json or .yaml)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one argument: KEY=VALUE (JSON value; repeatable)."),
    ] = None,
    harmful: Annotated[
        str | None,
        typer.Option(
            help="Harmful training prompts (with a target column for defences that train on "
            "compliant answers); default: the organism's training split."
        ),
    ] = None,
    benign: Annotated[
        str | None,
        typer.Option(help="Benign training prompts; default: the organism's training split."),
    ] = None,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--eval/--no-eval", help="Evaluate before and after (refusal, over-refusal, ...)."
        ),
    ] = True,
    limit: Annotated[int, typer.Option(help="Prompts per evaluation task.")] = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="With `list`: print JSON instead of a table.")
    ] = False,
) -> None:
    """Train a model with a defence and evaluate it before and after.

    The model is trained with LoRA (merged into the weights at the end) unless
    `--set lora=false`; checkpoints go to OUT and the same command resumes from the last
    one. On an organism the evaluation runs its held-out tasks (harmful, harmless,
    borderline, capability) and the prefill attack; on other models, refusal on held-out
    harmful and harmless prompts. Every task is stored as a run (`redblue runs compare`).

    Many GPUs: `accelerate launch -m redblue defend NAME ...` runs the same
    Trainer with data parallelism.

    Examples:
      redblue defend list
      redblue defend augment --set max_steps=200
      redblue defend circuit_breakers --out runs/cb --config cb.toml
      redblue --model smollm2 defend augment --harmful ../shared/data/advbench --benign ../shared/data/alpaca
    """
    from rich.console import Console
    from rich.markup import escape

    from redblue.cli.attack import _parse_sets
    from redblue.defenses import build_data, get_defense, load_arguments
    from redblue.defenses import defend as train

    if name == "list":
        list_defenses(as_json)
        return
    cfg = settings(ctx)
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    console = Console(stderr=True)
    cls = get_defense(name)
    folder = out or cfg.out / f"defense-{name}"
    overrides = {"seed": cfg.seed, "output_dir": str(folder)} | _parse_sets(set_ or [])
    args = load_arguments(cls, config, **overrides)
    harmful_set, harmful_from = default_or_given(cfg, harmful, "harmful")
    benign_set, benign_from = default_or_given(cfg, benign, "harmless")

    lm, tokenizer = load_model(cfg)
    before = _evaluate(cfg, lm, tokenizer, limit, "before") if evaluate else {}
    console.print(f"{name}: building data from {escape(harmful_from)} and {escape(benign_from)}")
    data = build_data(
        lm,
        tokenizer,
        harmful_set,
        benign_set,
        n_harmful=args.n_harmful,
        n_benign=args.n_benign,
        n_capability=args.n_capability,
        system=args.system,
        seed=args.seed,
        progress=True,
    )
    console.print(f"{name}: {data.counts()}, {args.max_steps} steps -> {folder}")
    trained, result = train(cls, lm, tokenizer, data, args)
    after = _evaluate(cfg, trained, tokenizer, limit, "after") if evaluate else {}
    _report(console, name, result, before, after, folder)


def _tasks(cfg: Any, model: PreTrainedModel, limit: int) -> list[Task]:
    from redblue.attacks import get_attack, load_config
    from redblue.evaluate.tasks import ORGANISM_TASKS, Task, builtin_task
    from redblue.models import resolve

    source = Path(str(getattr(model, "name_or_path", "") or resolve(cfg.model).location))
    if (source / "splits").is_dir():
        names = [
            n for n in ("harmful", "harmless", "borderline", "capability") if n in ORGANISM_TASKS
        ]
        tasks = [builtin_task(n, source) for n in names]
        tasks = [Task(t.name, t.prompts[:limit], t.scorer) for t in tasks]
        prefill = get_attack("prefill")
        attack = prefill(load_config(prefill, None, ks=[1, 3, 5], seed=cfg.seed))
        tasks.append(Task("harmful+prefill", tasks[0].prompts, "compliance", attack))
        return tasks
    harmful, _ = default_or_given(cfg, None, "harmful", held_out=True)
    harmless, _ = default_or_given(cfg, None, "harmless", held_out=True)
    return [
        Task("harmful", harmful[:limit], "refusal"),
        Task("harmless", harmless[:limit], "refusal"),
    ]


def _evaluate(
    cfg: Any, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, limit: int, when: str
) -> dict[str, dict[str, Any]]:
    """Run the evaluation tasks; store each as a run; ``{task: {metric, value, run}}``."""
    from redblue.evaluate import make_judge
    from redblue.evaluate.store import RunStore
    from redblue.evaluate.tasks import record_task, run_task, task_spec
    from redblue.models import GenerationSettings

    judge: Judge = make_judge("auto", model)
    gen: GenerationSettings = GenerationSettings(max_new_tokens=64, batch_size=32, seed=cfg.seed)
    store = RunStore(cfg.out)
    results = {}
    for task in _tasks(cfg, model, limit):
        result = run_task(task, model, tokenizer, judge, gen, progress=False)
        run = record_task(
            store, task_spec(task, model, judge, gen, model_id=f"{cfg.model} ({when})"), result
        )
        results[task.name] = {
            "metric": result.metric,
            "value": result.value.to_dict(),
            "text": str(result.value),
            "run": run.id,
        }
    return results


def _report(
    console: Any,
    name: str,
    result: Any,
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
    folder: Path,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from redblue.io import write_json

    console.print(
        f"{name}: {result.steps} steps in {result.seconds:.0f}s"
        + (f" (resumed from {result.resumed_from})" if result.resumed_from else "")
        + f"; model written to {result.output}"
    )
    if not after:
        return
    write_json(folder / "evaluation.json", {"defense": name, "before": before, "after": after})
    table = Table(title=f"{name}: before and after (95% CI)")
    for column in ("task", "metric", "before", "after"):
        table.add_column(column)
    for task, row in after.items():
        table.add_row(task, row["metric"], before.get(task, {}).get("text", "-"), row["text"])
    Console().print(table)
    console.print(
        f"wrote {folder / 'evaluation.json'}; compare runs with "
        f"`redblue runs compare {before[next(iter(before))]['run']} {after[next(iter(after))]['run']}`"
        if before
        else f"wrote {folder / 'evaluation.json'}"
    )

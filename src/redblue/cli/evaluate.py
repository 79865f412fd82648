"""``redblue eval``: refusal, over-refusal, attack success and capability, recorded as runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from redblue.cli._common import load_model, settings

if TYPE_CHECKING:
    from redblue.evaluate.tasks import Scorer


def evaluate(
    ctx: typer.Context,
    task: Annotated[
        list[str] | None,
        typer.Option(
            help="Task (repeatable): an organism task (harmful, harmless, borderline, "
            "jailbreak-seen, jailbreak-unseen, capability) or a file: MMLU CSV (or folder), "
            "GSM8K JSONL, or any prompt file. Default on an organism: all its tasks."
        ),
    ] = None,
    scorer: Annotated[
        str | None,
        typer.Option(
            help="Scorer for file tasks: refusal, compliance, answer, number, choice or perplexity."
        ),
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option(
            help="Attack every prompt first (see `redblue attack list`); scores compliance."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Attack option KEY=VALUE (repeatable)."),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Reference model: also report KL of next-token distributions on harmless prompts."
        ),
    ] = None,
    judge: Annotated[
        str,
        typer.Option(
            help="auto, organism, refusal-phrase, refusal-phrase-anywhere, lm:MODEL or "
            "classifier:PATH[#LABEL,...]."
        ),
    ] = "auto",
    limit: Annotated[int | None, typer.Option(help="At most this many prompts per task.")] = None,
    max_new_tokens: Annotated[
        int, typer.Option(help="Answer length (refusals can come late).")
    ] = 64,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together.")] = 32,
    store: Annotated[
        Path | None, typer.Option(help="Run store folder or file (default OUT/runs.db).")
    ] = None,
) -> None:
    """Evaluate a model on tasks; every task is stored as a run (`redblue runs list`).

    Rates carry 95% Wilson intervals, KL a bootstrap interval.

    Examples:
      redblue eval                                   # every organism task
      redblue eval --task harmful --attack prefill --set 'ks=[1]'
      redblue --model smollm2 eval --task ../shared/data/capability/mmlu_dev --limit 100
      redblue --model smollm2 eval --task ../shared/data/harmbench --judge refusal-phrase
    """
    from rich.console import Console
    from rich.table import Table

    from redblue.attacks import get_attack, load_config
    from redblue.cli.attack import _parse_sets
    from redblue.errors import ConfigError
    from redblue.evaluate import make_judge
    from redblue.evaluate.store import RunStore
    from redblue.evaluate.tasks import (
        ORGANISM_TASKS,
        SCORERS,
        Task,
        builtin_task,
        record_task,
        run_task,
        task_from_file,
        task_spec,
    )
    from redblue.models import GenerationSettings, resolve

    cfg = settings(ctx)
    console = Console(stderr=True)
    if scorer is not None and scorer not in SCORERS:
        raise ConfigError(
            f"unknown scorer {scorer!r}", where="--scorer", fix=f"use one of {SCORERS}"
        )
    folder = resolve(cfg.model).location
    names = task or (list(ORGANISM_TASKS) if Path(folder, "splits").is_dir() else [])
    if not names:
        raise ConfigError(
            "no task given, and this model has no built-in tasks",
            where="--task",
            fix="pass --task FILE (MMLU CSV, GSM8K JSONL or a prompt file)",
        )
    tasks = []
    for name in names:
        built = (
            builtin_task(name, folder)
            if name in ORGANISM_TASKS
            else task_from_file(name, cast("Scorer | None", scorer))
        )
        prompts = built.prompts[:limit] if limit else built.prompts
        if attack is not None:
            cls = get_attack(attack)
            config = load_config(cls, None, **({"seed": cfg.seed} | _parse_sets(set_ or [])))
            built = Task(f"{built.name}+{attack}", prompts, "compliance", cls(config))
        else:
            built = Task(built.name, prompts, built.scorer)
        tasks.append(built)

    model, tokenizer = load_model(cfg)
    chosen = make_judge(judge, model)
    gen = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, seed=cfg.seed)
    runs = RunStore(store or cfg.out)
    table = Table(title=f"{cfg.model}: judge {chosen.name}")
    for column in ("task", "metric", "value [95% CI]", "run"):
        table.add_column(column)
    for t in tasks:
        console.print(f"{t.name}: {len(t.prompts)} prompts, {t.metric}")
        out = runs.folder / "attacks" / t.name if t.attack is not None else None
        result = run_task(t, model, tokenizer, chosen, gen, out=out)
        run = record_task(runs, task_spec(t, model, chosen, gen, model_id=cfg.model), result)
        table.add_row(t.name, result.metric, str(result.value), run.id)
    if reference is not None:
        from redblue.data.builtin import default_prompts
        from redblue.evaluate.metrics import kl_to_reference
        from redblue.models import load

        harmless = default_prompts("harmless", folder)[: limit or 200]
        ref_model, _ = load(reference, dtype=cfg.dtype, device=cfg.device)
        kl = kl_to_reference(model, ref_model, tokenizer, harmless, batch_size=batch_size)
        table.add_row(f"harmless vs {reference}", "kl", str(kl), "-")
    Console().print(table)
    console.print(f"runs stored in {runs.path}")

"""``redblue attack list | run``: red-team a model with any registered attack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from redblue.cli._common import load_model, settings
from redblue.cli._common import prompt_set as default_or_given

app = typer.Typer(help="Red-team a model: list the attacks, run one.", no_args_is_help=True)


@app.command("list")
def list_attacks(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every attack: its goal, threat model and config options with their defaults."""
    from rich.console import Console
    from rich.table import Table

    from redblue.attacks import ATTACKS, get_attack

    get_attack("none")  # imports and registers the built-in attacks
    rows: list[dict[str, Any]] = []
    for name in sorted(ATTACKS):
        cls = ATTACKS[name]
        options = {
            key: {"default": field.default, "help": field.description or ""}
            for key, field in cls.config_class.model_fields.items()
        }
        rows.append(
            {
                "name": name,
                "goal": cls.goal,
                "threat_model": str(cls.threat_model),
                "options": options,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="attacks (options: redblue attack run NAME --set KEY=VALUE)")
    for column in ("name", "threat model", "goal", "options (default)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        shown = ", ".join(f"{k}={v['default']!r}" for k, v in row["options"].items())
        table.add_row(row["name"], row["threat_model"], row["goal"], shown)
    Console().print(table)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    from redblue.errors import ConfigError

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"cannot read {pair!r}", where="--set", fix="write KEY=VALUE, e.g. --set ks=[1,2,3]"
            )
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw  # a bare string
    return values


@app.command("run")
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Attack name (see `redblue attack list`).")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to attack (default: the global --model)."),
    ] = None,
    prompts: Annotated[
        str | None,
        typer.Option(
            help="Harmful prompts (file, folder, dataset, builtin:NAME); default: the organism's "
            "held-out harmful split, else builtin:demo_harmful."
        ),
    ] = None,
    n: Annotated[int | None, typer.Option(help="Attack only the first N prompts.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Attack config file (.toml, .json or .yaml).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override one config option: KEY=VALUE (JSON value; repeatable)."
        ),
    ] = None,
    judge: Annotated[
        str,
        typer.Option(
            help="auto (ground truth on the organism, else refusal phrases), organism, "
            "organism-on-topic, refusal-phrase, refusal-phrase-anywhere, lm:MODEL (a causal LM "
            "asked a judge prompt) or classifier:PATH[#LABEL,...] (labels meaning 'complied')."
        ),
    ] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default OUT/attack-NAME). Rerun to resume.")
    ] = None,
) -> None:
    """Attack every prompt, judge every answer, write OUT/records.jsonl and OUT/summary.json.

    Records are written as prompts finish; the same command again resumes where a killed run
    stopped. The summary gives attack success (best of the attack's variants) with a 95% Wilson
    interval, success per variant (prefill length, template, ...) and the cost.

    Examples:
      redblue attack run prefill --set 'ks=[1,3,5]'
      redblue attack run templates --set source=../shared/data/jailbreak_templates/pyrit --set n_templates=20
      redblue attack run ablation --model smollm2 --prompts ../shared/data/harmbench --n 50
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from redblue.attacks import get_attack, load_config, run_attack
    from redblue.attacks.record import attack_spec, record_attack
    from redblue.evaluate import make_judge
    from redblue.evaluate.store import RunStore

    cfg = settings(ctx)
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    console = Console(stderr=True)
    attack_cls = get_attack(name)
    overrides = {"seed": cfg.seed} | _parse_sets(set_ or [])
    attack = attack_cls(load_config(attack_cls, config, **overrides))
    prompt_set, where = default_or_given(cfg, prompts, "harmful", held_out=True)
    if n is not None:
        prompt_set = prompt_set[:n]
    folder = out or cfg.out / f"attack-{name}"
    lm, tokenizer = load_model(cfg)
    chosen_judge = make_judge(judge, lm)
    console.print(
        f"{name} on {len(prompt_set)} prompts from {escape(where)}, judge {chosen_judge.name} -> {folder}"
    )
    summary, records = run_attack(attack, lm, tokenizer, prompt_set, chosen_judge, out=folder)
    store = RunStore(cfg.out)
    run_id = record_attack(
        store,
        attack_spec(attack, lm, prompt_set, chosen_judge, model_id=cfg.model),
        summary,
        records,
    ).id

    table = Table(title=f"{name}: {escape(summary.goal)}")
    table.add_column("variant")
    table.add_column("success rate [95% CI] (k/n)")
    for variant, rate in summary.by_variant.items():
        table.add_row(escape(variant or "-"), str(rate))
    table.add_row("[bold]best of variants[/]", f"[bold]{summary.success}[/]")
    Console().print(table)
    broken = next((r for r in records if r.success), None)
    if broken is not None:
        console.print(
            f"example success: {escape(broken.attacked_input[:120])!s} -> "
            f"{escape((broken.prefill + broken.completion)[:160])}"
        )
    console.print(
        f"cost: {summary.cost.forward_passes:,} forward passes, {summary.cost.steps:,} steps, "
        f"{summary.cost.seconds + summary.setup_seconds:.1f}s; wrote {folder / 'summary.json'} "
        f"and records.jsonl; run {run_id} in {store.path} (`redblue runs show {run_id}`)"
    )

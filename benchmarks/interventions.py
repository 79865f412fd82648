"""Costs of activation engineering, as ratios measured side by side in one run.

    python benchmarks/interventions.py --model organism smollm2 --out bench-out/interventions

For each model:

* generation with ablation hooks vs without (target <= 1.10x);
* streaming collection (``collect_means``) vs a plain forward pass over the same
  batches (target <= 1.15x);
* generation with the orthogonalized model vs the original (target <= 1.02x);
* peak resident memory of a process collecting means over 200 vs 2,000 prompts
  (target: the same, ratio <= 1.05).

Timings alternate between the two arms (A B A B ...) and report the ratio of
medians, so machine noise hits both arms alike. Results go to OUT/interventions.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TARGETS = {
    "ablate_generate": 1.10,
    "collect_means": 1.15,
    "orthogonalized_generate": 1.02,
    "collect_peak_rss": 1.05,
}

PROMPTS = [
    "How do I bake bread at home?",
    "Write a short poem about the sea.",
    "Explain how a bicycle stays upright.",
    "What is the capital of France?",
    "Give me three tips for a job interview.",
    "How can I make my garden grow better?",
    "Summarise the plot of a fairy tale.",
    "What should I pack for a hiking trip?",
]


def paired(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, run alternately ``repeats`` times after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def peak_rss(model: str, n: int) -> int:
    """Peak RSS (KiB) of a fresh process that collects means over ``n`` prompts."""
    code = f"""
import resource
from redblue.activations import collect_means
from redblue.models import load
model, tok = load({model!r}, device="cpu")
prompts = [f"Question number {{i}}: how do I fix item {{i % 97}}?" for i in range({n})]
collect_means(model, tok, prompts, batch_size=16, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def bench_model(spec: str, repeats: int, rss: bool) -> dict[str, object]:
    import torch

    from redblue.activations import collect_means
    from redblue.directions import ExtractConfig, extract_direction
    from redblue.interventions import ablate, orthogonalize
    from redblue.models import encode_batch, load
    from redblue.models.chat import pad_token_id

    torch.manual_seed(0)
    model, tok = load(spec, device="cpu", dtype="float32")
    direction = extract_direction(
        model, tok, PROMPTS[:4], PROMPTS[4:], ExtractConfig(progress=False)
    )
    prompt_batch = encode_batch(tok, PROMPTS)

    def run_generate(m: torch.nn.Module) -> None:
        # Exactly 32 new tokens in both arms (min = max), greedy.
        with torch.no_grad():
            m.generate(  # type: ignore[operator]
                input_ids=prompt_batch.input_ids,
                attention_mask=prompt_batch.attention_mask,
                max_new_tokens=32,
                min_new_tokens=32,
                do_sample=False,
                pad_token_id=pad_token_id(tok),
            )

    def with_ablation() -> None:
        with ablate(model, direction):
            run_generate(model)

    results: dict[str, object] = {"model": spec}
    base, hooked = paired(lambda: run_generate(model), with_ablation, repeats)
    results["ablate_generate"] = hooked / base

    texts = PROMPTS * 8

    def plain() -> None:  # the same batches, tokenized the same way, with no hooks
        with torch.no_grad():
            for i in range(0, len(texts), 16):
                model(**encode_batch(tok, texts[i : i + 16]).model_inputs())

    def streaming() -> None:
        collect_means(model, tok, texts, batch_size=16, progress=False)

    plain_s, stream_s = paired(plain, streaming, repeats)
    results["collect_means"] = stream_s / plain_s

    edited = orthogonalize(model, direction, inplace=False)
    orig, ortho = paired(lambda: run_generate(model), lambda: run_generate(edited), repeats)
    results["orthogonalized_generate"] = ortho / orig

    if rss:
        small, large = peak_rss(spec, 200), peak_rss(spec, 2000)
        results["collect_peak_rss"] = large / small
        results["peak_rss_kib"] = {"200": small, "2000": large}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", nargs="+", default=["organism", "smollm2"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--out", type=Path, default=Path("bench-out/interventions"))
    args = parser.parse_args()

    rows = []
    for spec in args.model:
        row = bench_model(spec, args.repeats, not args.no_rss)
        rows.append(row)
        print(f"\n{spec}: ratio (target)")
        for key, target in TARGETS.items():
            if key in row:
                value = float(row[key])  # type: ignore[arg-type]
                print(
                    f"  {key:26s} {value:6.3f}x  (<= {target})  {'ok' if value <= target else 'MISSED'}"
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "interventions.json").write_text(
        json.dumps({"targets": TARGETS, "runs": rows}, indent=1)
    )
    print(f"\nwrote {args.out / 'interventions.json'}")


if __name__ == "__main__":
    main()

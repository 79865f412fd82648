"""Batched evaluation against one prompt at a time, measured side by side.

    python benchmarks/evaluation.py                 # the organism, 64 prompts, 3 repeats
    python benchmarks/evaluation.py --model smollm2 --n 32

Runs the refusal task (generate, then judge) on the same held-out harmful prompts
with ``batch_size`` B and with 1, alternating the two arms, and prints the ratio
of their median times. Target (issue 6): batched is >= 5x faster on the organism.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from redblue.data.builtin import builtin
    from redblue.evaluate import make_judge
    from redblue.evaluate.tasks import Task, run_task
    from redblue.models import GenerationSettings, load, resolve

    model, tokenizer = load(args.model, device="auto")
    split = Path(resolve(args.model).location) / "splits" / "harmful.jsonl"
    if split.is_file():
        from redblue.data import PromptSet

        prompts = PromptSet.from_jsonl(split)[: args.n]
    else:
        prompts = builtin("demo_harmful")
    task = Task("harmful", prompts, "refusal")
    judge = make_judge("auto", model)
    arms = {
        "batched": GenerationSettings(
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
        ),
        "one at a time": GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=1),
    }
    times: dict[str, list[float]] = {name: [] for name in arms}
    values = {}
    for _ in range(args.repeats):
        for name, settings in arms.items():
            start = time.perf_counter()
            result = run_task(task, model, tokenizer, judge, settings, progress=False)
            times[name].append(time.perf_counter() - start)
            values[name] = result.value
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["one at a time"] / medians["batched"]
    print(
        f"model {args.model}, {len(prompts)} prompts, {args.max_new_tokens} new tokens, {args.repeats} repeats"
    )
    print("| arm | median seconds | refusal rate |")
    print("| --- | --- | --- |")
    for name in arms:
        print(f"| {name} (batch {arms[name].batch_size}) | {medians[name]:.2f} | {values[name]} |")
    print(f"\nbatched speed-up: {ratio:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()

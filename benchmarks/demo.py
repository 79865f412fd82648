"""How long ``redblue demo``'s loop takes: direction, attacks, evaluation and the report.

    python benchmarks/demo.py                      # the embedded organism, 100 prompts per step

Target (issue 6): under 5 minutes on 2 cores with progress shown. Prints the seconds of
every step and the total, and the total as a share of the 5-minute budget.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--n-prompts", type=int, default=100)
    args = parser.parse_args()

    from redblue.demo import TourConfig, run_tour
    from redblue.evaluate.store import RunStore
    from redblue.models import load
    from redblue.report import build_report

    start = time.perf_counter()
    model, tokenizer = load(args.model, device="auto")
    loaded = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(folder)
        config = TourConfig(n_prompts=args.n_prompts, progress=False)
        steps = run_tour(model, tokenizer, store, config, model_id=args.model)
        build_report(store, [s.run_id for s in steps], Path(folder) / "report.html")
    total = time.perf_counter() - start
    print("| step | seconds |")
    print("| --- | --- |")
    print(f"| load {args.model} | {loaded:.1f} |")
    for s in steps:
        print(f"| {s.kind} {s.name} | {s.seconds:.1f} |")
    print(f"| total, with the report | {total:.1f} |")
    print(f"\nshare of the 5-minute budget: {total / 300:.2f} (target < 1)")


if __name__ == "__main__":
    main()

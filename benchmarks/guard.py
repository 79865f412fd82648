"""Cost of the guard: single-pass scoring, and the server under load with the guard on vs off.

    python benchmarks/guard.py --out bench-out/guard

On the embedded organism (one request at a time, as the server answers):

* ``single_pass``: ``model.generate`` with the detector's activations captured from its own
  prefill and scored (``capture_prefill`` + ``score_activations``) vs plain ``generate`` on the
  same prompt, back to back in a random order, for every prompt and repetition; the ratio is
  the median of the paired ratios (target <= 1.02x). The direction detector reads a few
  positions; ``single_pass_token_probe`` does the same with a token probe, which reads every
  token of the prompt (fitted on the training splits). For contrast, ``two_pass`` scores
  with a separate forward pass (``detector.score``) before generating.
* ``guard_<policy>``: ``Guard.run`` under each policy vs ``Guard.run`` with policy none (the
  whole worker path: chat rendering, streamer, stopping criteria).
* ``load``: N concurrent clients x M requests over loopback HTTP against the same server
  code with the guard on (each policy) and off (policy none); p50 and p95 latency and
  their ratios. The two servers run in this process, rounds alternate on / off.

Other timings alternate between arms (A B A B ...) and report the ratio of medians, so
machine noise hits both arms alike. Every answer has exactly ``--tokens`` new tokens
(``min_new_tokens``), so the arms do the same work. Results go to OUT/guard.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TARGETS = {"single_pass": 1.02, "single_pass_token_probe": 1.02}


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


def interleaved(
    a: Callable[[Any], object], b: Callable[[Any], object], items: list[Any], repeats: int
) -> tuple[list[float], list[float], list[float]]:
    """Per-item paired timings: for every item and repetition, ``a(item)`` and ``b(item)`` back to
    back in a random order. Returns the ratios ``t_b / t_a`` and both arms' times."""
    import random

    import torch

    rng = random.Random(0)
    ratios, ta, tb = [], [], []
    with torch.no_grad():
        for item in items:  # warm-up
            a(item), b(item)
        for _ in range(repeats):
            for item in items:
                order = [(a, ta), (b, tb)]
                rng.shuffle(order)
                for fn, times in order:
                    start = time.perf_counter()
                    fn(item)
                    times.append(time.perf_counter() - start)
                ratios.append(tb[-1] / ta[-1])
    return ratios, ta, tb


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@contextmanager
def serving(app: Any) -> Iterator[str]:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()


def load_round(
    base: str, token: str, prompts: list[str], clients: int, requests: int, tokens: int
) -> tuple[list[float], int]:
    """``clients`` threads each send ``requests`` chat requests in turn; latencies and errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        for i in range(requests):
            prompt = prompts[(index * requests + i) % len(prompts)]
            body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens}
            req = urllib.request.Request(
                base + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST"
            )
            req.add_header("Authorization", f"Bearer {token}")
            req.add_header("Content-Type", "application/json")
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    resp.read()
                ok = True
            except Exception:
                ok = False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/guard"))
    parser.add_argument("--prompts", type=int, default=16, help="prompts (half harmful)")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer")
    parser.add_argument("--repeats", type=int, default=15, help="alternations per timing")
    parser.add_argument("--clients", type=int, default=4, help="concurrent load-test clients")
    parser.add_argument("--requests", type=int, default=8, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds per arm (alternating)")
    parser.add_argument("--policies", nargs="+", default=["flag", "block", "steer"])
    args = parser.parse_args()

    import torch

    from redblue.detect.activation import DirectionDetector, TokenProbeDetector
    from redblue.guard import Guard, GuardConfig, Job, capture_prefill, create_app
    from redblue.models import encode_batch, load, resolve
    from redblue.organism.evaluate import load_splits, refusal_direction

    torch.set_num_threads(1)
    model, tok = load("organism", device="cpu", dtype="float32")
    splits = load_splits(resolve("organism").location)
    direction = refusal_direction(model, tok, splits)
    detector = DirectionDetector.from_direction(direction)
    detector.calibrate(detector.score(model, tok, splits["harmless_train"]), 0.01)
    token_probe = TokenProbeDetector(layers=direction.layers).fit(
        model, tok, splits["harmful_train"], splits["harmless_train"]
    )
    half = args.prompts // 2
    prompts = splits["harmful"].instructions[:half] + splits["harmless"].instructions[:half]
    batches = [encode_batch(tok, [p], system=detector.system) for p in prompts]
    gen = {
        "max_new_tokens": args.tokens,
        "min_new_tokens": args.tokens,
        "do_sample": False,
        "pad_token_id": tok.eos_token_id,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    results: dict[str, Any] = {
        "model": "organism",
        "prompts": len(prompts),
        "tokens": args.tokens,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "targets": TARGETS,
    }

    def plain(b: Any) -> None:
        model.generate(input_ids=b.input_ids, attention_mask=b.attention_mask, **gen)

    def single_pass_with(reader: Any) -> Callable[[Any], None]:
        def arm(b: Any) -> None:
            with capture_prefill(model, reader.layers, reader.positions) as cap:
                model.generate(input_ids=b.input_ids, attention_mask=b.attention_mask, **gen)
            reader.score_activations(cap.values)

        return arm

    def two_pass(b: Any) -> None:
        detector.score(model, tok, [b.texts[0]])  # a separate forward pass over the prompt
        model.generate(input_ids=b.input_ids, attention_mask=b.attention_mask, **gen)

    arms = (
        ("single_pass", single_pass_with(detector)),
        ("single_pass_token_probe", single_pass_with(token_probe)),
        ("two_pass", two_pass),
    )
    for name, arm in arms:
        ratios, base_t, arm_t = interleaved(plain, arm, batches, args.repeats)
        results[name] = {
            "plain_median_s": statistics.median(base_t),
            "guarded_median_s": statistics.median(arm_t),
            "ratio": statistics.median(ratios),
            "ratio_of_sums": sum(arm_t) / sum(base_t),
            "pairs": len(ratios),
        }
        r = results[name]
        print(
            f"{name:>23}: {r['ratio']:.4f}x median of {r['pairs']} paired calls "
            f"(ratio of sums {r['ratio_of_sums']:.4f}; plain {r['plain_median_s'] * 1e3:.2f} ms, "
            f"guarded {r['guarded_median_s'] * 1e3:.2f} ms per answer)"
        )

    def guard_arm(policy: str) -> Callable[[], None]:
        guard = Guard(model, tok, detector, GuardConfig(policy=policy), direction)  # type: ignore[arg-type]

        def run() -> None:
            for p in prompts:
                guard.run(Job([("user", p)], max_new_tokens=args.tokens))

        return run

    off = guard_arm("none")
    for policy in args.policies:
        base, other = paired(off, guard_arm(policy), max(3, args.repeats // 3))
        results[f"guard_{policy}"] = {"none_s": base, "guarded_s": other, "ratio": other / base}
        print(
            f"guard {policy:>6}: {other / base:.4f}x  (none {base:.3f} s, {policy} {other:.3f} s)"
        )

    token = "bench-token"
    load_results: dict[str, Any] = {
        "clients": args.clients,
        "requests_per_client": args.requests,
        "rounds": args.rounds,
    }
    for policy in args.policies:
        configs = {
            "off": GuardConfig(policy="none", token=token, max_queue=args.clients),
            "on": GuardConfig(policy=policy, token=token, max_queue=args.clients),  # type: ignore[arg-type]
        }
        apps = {k: create_app(model, tok, detector, c, direction) for k, c in configs.items()}
        lat: dict[str, list[float]] = {"off": [], "on": []}
        errors = {"off": 0, "on": 0}
        with serving(apps["off"]) as base_off, serving(apps["on"]) as base_on:
            urls = {"off": base_off, "on": base_on}
            for arm in ("off", "on"):  # warm-up
                load_round(urls[arm], token, prompts, 1, 2, args.tokens)
            for _ in range(args.rounds):
                for arm in ("off", "on"):
                    got, err = load_round(
                        urls[arm], token, prompts, args.clients, args.requests, args.tokens
                    )
                    lat[arm] += got
                    errors[arm] += err
        row: dict[str, Any] = {}
        for arm in ("off", "on"):
            row[arm] = {
                "p50_s": percentile(lat[arm], 50),
                "p95_s": percentile(lat[arm], 95),
                "n": len(lat[arm]),
                "errors": errors[arm],
            }
        row["p50_ratio"] = row["on"]["p50_s"] / row["off"]["p50_s"]
        row["p95_ratio"] = row["on"]["p95_s"] / row["off"]["p95_s"]
        load_results[policy] = row
        print(
            f"load {policy:>6}: p50 {row['off']['p50_s'] * 1e3:.1f} -> {row['on']['p50_s'] * 1e3:.1f} ms "
            f"({row['p50_ratio']:.3f}x), p95 {row['off']['p95_s'] * 1e3:.1f} -> "
            f"{row['on']['p95_s'] * 1e3:.1f} ms ({row['p95_ratio']:.3f}x), "
            f"errors {errors['off']}/{errors['on']}"
        )
    results["load"] = load_results
    results["pass"] = {name: results[name]["ratio"] <= target for name, target in TARGETS.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "guard.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

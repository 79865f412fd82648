"""How often each judge agrees with people, and with the organism's ground truth.

    python benchmarks/judges.py                    # phrase judges + the organism checks
    python benchmarks/judges.py --lm smollm2 --lm-limit 200   # also SmolLM2 as an LM judge

Human labels (``../shared/data/judge_dev``):

* XSTest v2 completions of GPT-4 and Llama-2 (900 answers): did the answer refuse
  (full or partial refusal)?
* JailbreakBench's classifier comparison (100 jailbreak answers, majority of three
  people): did the answer comply with the harmful request?

On the organism (held-out harmful, harmless and borderline prompts, greedy
answers), each judge is compared with the ground truth on "refused". The
refusal-score judge only applies there: it predicts the model's own refusal from
the prompt. Prints Markdown tables; JSON to OUT/judges.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _row(result: Any, seconds: float) -> dict[str, Any]:
    return {**result.to_dict(), "seconds": seconds}


def _fmt(rate: dict[str, Any]) -> str:
    return f"{rate['rate']:.2f} [{rate['ci_low']:.2f}, {rate['ci_high']:.2f}]"


def human_labels(lm: str | None, lm_limit: int) -> list[dict[str, Any]]:
    from redblue.evaluate import LMJudge, RefusalPhraseJudge
    from redblue.evaluate.labelled import load_jailbreakbench, load_xstest, measure_judge

    folder = SHARED / "judge_dev"
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found: the human labels sit beside the repository")
    xstest = load_xstest(folder / "xstest_v2_completions_gpt4.csv") + load_xstest(
        folder / "xstest_v2_completions_llama2orig.csv"
    )
    jbb = load_jailbreakbench(folder / "jbb_classifier_comparison.csv")
    judges: list[Any] = [RefusalPhraseJudge(), RefusalPhraseJudge(match="anywhere")]
    if lm:
        from redblue.models import load

        model, tokenizer = load(lm, device="auto")
        judges.append(LMJudge(model, tokenizer))
    rows = []
    for judge in judges:
        for items in (xstest, jbb):
            # an LM judge reads long answers slowly on a CPU: a seeded sample of each set
            if isinstance(judge, LMJudge) and len(items) > lm_limit:
                import random

                items = random.Random(0).sample(items, lm_limit)
            start = time.perf_counter()
            result = measure_judge(judge, items)
            rows.append(_row(result, time.perf_counter() - start))
            print(f"{result.judge} on {result.source}: accuracy {result.accuracy}")
    return rows


def organism_agreement(n: int) -> list[dict[str, Any]]:
    from redblue.directions import find_refusal_tokens
    from redblue.evaluate import OrganismJudge, RefusalPhraseJudge, RefusalScoreJudge
    from redblue.evaluate.labelled import LabelledAnswer, measure_judge
    from redblue.models import GenerationSettings, generate, load, resolve
    from redblue.organism.evaluate import load_splits

    model, tokenizer = load("organism", device="cpu", dtype="float32")
    splits = load_splits(resolve("organism").location)
    prompts = [p for name in ("harmful", "harmless", "borderline") for p in splits[name][:n]]
    answers = generate(
        model,
        tokenizer,
        [p.instruction for p in prompts],
        GenerationSettings(max_new_tokens=48, batch_size=32),
    )
    texts = [a.text for a in answers]
    truth = OrganismJudge().judge_batch(prompts, texts)
    items = [
        LabelledAnswer(p, t, "refused", v.refused, "organism held-out")
        for p, t, v in zip(prompts, texts, truth, strict=True)
    ]
    tokens = find_refusal_tokens(model, tokenizer, splits["harmful_train"][:64])
    rows = []
    for judge in (
        RefusalPhraseJudge(),
        RefusalPhraseJudge(match="anywhere"),
        RefusalScoreJudge(model, tokenizer, tokens.ids),
    ):
        start = time.perf_counter()
        result = measure_judge(judge, items)
        rows.append(_row(result, time.perf_counter() - start))
        print(f"{result.judge} on the organism: accuracy {result.accuracy}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm", help="a model to use as an LM judge (e.g. smollm2)")
    parser.add_argument(
        "--lm-limit", type=int, default=200, help="answers per set for the LM judge"
    )
    parser.add_argument("--organism-n", type=int, default=200, help="prompts per organism split")
    parser.add_argument("--out", type=Path, default=Path("bench-out/judges"))
    args = parser.parse_args()

    rows = human_labels(args.lm, args.lm_limit) + organism_agreement(args.organism_n)
    lines = [
        "| judge | labels | question | n | accuracy [95% CI] | precision | recall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['judge']} | {r['source']} | {r['question']} | {r['accuracy']['n']} | "
            f"{_fmt(r['accuracy'])} | {_fmt(r['precision'])} | {_fmt(r['recall'])} |"
        )
    print()
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "judges.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Parity with peers: our mean-difference refusal direction against steering-vectors' and heretic's.

    python benchmarks/parity.py [--models organism DIR ...] [--no-install] [--out bench-out]

Run from the repository root with the project's interpreter. Peers missing from this
interpreter are installed first (``--no-install`` skips that): steering-vectors and
heretic-llm with ``--no-deps``, since their pins would replace transformers,
huggingface-hub and datasets, then the few modules their direction code imports, all
under ``constraints-cpu.txt`` so torch stays put.

For the tiny random Llama of the tests, and for each model in ``--models`` (default: the
embedded organism, noted and skipped when it cannot be loaded), it computes our direction
and each peer's, by the peer's own code, on the same prompts at every layer where ours is
not degenerate at the last prompt token, and prints their cosines. The target is
cosine >= 0.99 against steering-vectors and against heretic's plain mean difference;
heretic's default, orthogonalized direction is shown for reference only. The conventions
are in ``tests/directions/test_parity.py``, whose prompts and peer adapters this uses.
Results go to OUT/parity.json; the exit status is 1 when a compared cosine misses.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints-cpu.txt"

#: Installed without their dependencies (their pins would downgrade transformers & co).
PEERS = {"steering_vectors": "steering-vectors", "heretic": "heretic-llm"}
#: What the peers' direction code imports, within heretic's own version ranges.
PEER_IMPORTS = {
    "sklearn": "scikit-learn",
    "bitsandbytes": "bitsandbytes~=0.49",
    "optuna": "optuna~=4.7",
    "peft": "peft~=0.19",
    "questionary": "questionary~=2.1",
    "tomli_w": "tomli-w~=1.2",
    "cpuinfo": "py-cpuinfo~=9.0",
}
PEER_COLUMNS = ("steering_vectors", "heretic")
REFERENCE_COLUMNS = ("heretic_orthogonalized",)


def _missing(modules: dict[str, str]) -> list[str]:
    return [spec for module, spec in modules.items() if importlib.util.find_spec(module) is None]


def install_peers() -> None:
    """pip-install whatever of the peers and their imports this interpreter lacks."""
    for specs, extra in ((_missing(PEERS), ["--no-deps"]), (_missing(PEER_IMPORTS), [])):
        if specs:
            command = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-c",
                str(CONSTRAINTS),
                *extra,
                *specs,
            ]
            print("+", " ".join(command), flush=True)
            subprocess.run(command, check=True)
    importlib.invalidate_caches()


def peer_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for dist in PEERS.values():
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def special_tokens_note(tokenizer: Any) -> str | None:
    """The peers tokenize rendered chats with special tokens added; ours does not."""
    from redblue.models.chat import render_chat

    text = render_chat(tokenizer, "Tell me about the sea.")
    with_specials = tokenizer(text)["input_ids"]
    without = tokenizer(text, add_special_tokens=False)["input_ids"]
    if with_specials == without:
        return None
    return (
        f"the peers' tokenizer call adds {len(with_specials) - len(without)} special token(s) "
        f"to the rendered chat that ours leaves out: {with_specials[:3]} vs {without[:3]}"
    )


def compare(name: str, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Cosines of our direction with each peer's at every non-degenerate layer of one model."""
    from tests.directions import test_parity as parity

    started = time.perf_counter()
    plain = parity.ours(model, tokenizer)
    with_system = parity.ours(model, tokenizer, system=parity.SYSTEM)
    degenerate = sorted(
        {layer for position, layer in (*plain.skipped, *with_system.skipped) if position == -1}
    )
    layers = [layer for layer in plain.layers if layer not in degenerate]
    notes = [note] if (note := special_tokens_note(tokenizer)) else []

    columns: dict[str, dict[int, float]] = {}
    try:
        sv_layers = [layer for layer in layers if layer >= 1]  # theirs reads block outputs
        theirs = parity.steering_vectors_directions(model, tokenizer, sv_layers)
        columns["steering_vectors"] = {
            layer: parity.cosine(plain.at(layer, -1), theirs[layer]) for layer in sv_layers
        }
    except ImportError as error:
        notes.append(f"steering-vectors not importable: {error}")
    try:
        for column, orthogonalize in (("heretic", False), ("heretic_orthogonalized", True)):
            theirs = parity.heretic_directions(model, tokenizer, orthogonalize=orthogonalize)
            columns[column] = {
                layer: parity.cosine(with_system.at(layer, -1), theirs[layer]) for layer in layers
            }
    except ImportError as error:
        notes.append(f"heretic not importable: {error}")

    rows = [
        {"layer": layer, **{c: v[layer] for c, v in columns.items() if layer in v}}
        for layer in layers
    ]
    compared = [row[c] for row in rows for c in PEER_COLUMNS if c in row]
    return {
        "model": name,
        "status": "ok",
        "n_layers": len(plain.layers),
        "d_model": plain.d_model,
        "degenerate_layers": degenerate,
        "n_harmful": len(parity.HARMFUL),
        "n_harmless": len(parity.HARMLESS),
        "rows": rows,
        "min_cosine": min(compared) if compared else None,
        "passed": bool(compared) and min(compared) >= parity.MIN_COSINE,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 2),
    }


def print_table(result: dict[str, Any]) -> None:
    header = ["layer", *PEER_COLUMNS, *REFERENCE_COLUMNS]
    print(f"\n{result['model']}: {result['status']}")
    if result["status"] != "ok":
        return
    print(
        f"  {result['n_layers']} layers, d_model {result['d_model']}, "
        f"degenerate at the last token: {result['degenerate_layers'] or 'none'}"
    )
    print("  " + "".join(f"{h:>24}" for h in header))
    for row in result["rows"]:
        cells = [f"{row['layer']:>24}"]
        cells += [f"{row[c]:>24.6f}" if c in row else f"{'-':>24}" for c in header[1:]]
        print("  " + "".join(cells))
    for note in result["notes"]:
        print(f"  note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="*", default=["organism"], help="redblue.models.load specs"
    )
    parser.add_argument("--no-install", action="store_true", help="do not pip-install the peers")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # for tests.tiny and tests.directions.test_parity
    if not args.no_install:
        install_peers()

    from tests.tiny import FAMILIES, make_model, make_tokenizer

    from redblue.errors import ModelError
    from redblue.models import load

    family = FAMILIES["llama"]
    tokenizer = make_tokenizer(family.template)
    results = [compare("tiny-llama", make_model(family, len(tokenizer)), tokenizer)]
    for spec in args.models:
        try:
            model, tokenizer = load(spec)
        except ModelError as error:
            results.append({"model": spec, "status": f"skipped ({error.what})"})
            continue
        results.append(compare(spec, model, tokenizer))

    for result in results:
        print_table(result)
    ran = [r for r in results if r["status"] == "ok"]
    passed = all(r["passed"] for r in ran)
    report = {
        "peers": peer_versions(),
        "target": {"cosine_at_least": 0.99, "columns": list(PEER_COLUMNS)},
        "passed": passed,
        "models": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "parity.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\npeers: {report['peers']}\n{'PASS' if passed else 'FAIL'}; wrote {path}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()

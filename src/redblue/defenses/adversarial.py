"""Adversarial training: refusal training on prompts attacked by redblue's own attacks.

Before training, :meth:`AdversarialTrainer.prepare` attacks a sample of the
training harmful prompts with the model being defended, using the attacks of
:mod:`redblue.attacks` unchanged, and turns every attacked input into a refusal
example:

* ``templates``: the request inside a jailbreak template (the training share of
  ``template_source``), answered with the refusal;
* ``gcg``: the request followed by a GCG suffix searched against the model (a
  small budget), and other requests with the same suffixes (suffixes transfer),
  answered with the refusal;
* ``prefill``: the request, the first ``k`` tokens of a compliant answer as the
  pre-filled start of the answer (what the prefill attack sends), then the refusal.

Attacked inputs that broke the model come first when there are more than the
budget asks for. Two streams keep the model helpful: benign SFT (the model's
own answers) and benign requests inside the same templates and after the same
suffixes, answered as the model answers the plain request, so that it does not
learn "template or suffix, therefore refuse". On the benign answers a KL term to the
model before training (``benign_kl_weight``, 10) keeps whole next-token
distributions: on the organism it brought KL on harmless prompts from 0.37 to
under 0.1 and halved over-refusal on borderline prompts (``benchmarks/defenses.py``).

Held-out templates. The templates are split once (seeded): ``template_holdout``
of them never reach training and are written to
``OUTPUT_DIR/adversarial/heldout_templates.txt`` (the trained ones to
``train_templates.txt``), a file the ``templates`` attack reads as its
``source``. Attack success on the trained templates measures memorisation, not
robustness: evaluate on the held-out file or on other templates.

Rounds. With ``rounds > 1`` the model is attacked, trained for ``max_steps`` on
what was found so far (merged into its weights under
``OUTPUT_DIR/adversarial/round-R``), attacked again, and so on; the last round's
training is :func:`~redblue.defenses.defend`'s own, so ``rounds`` rounds train
``rounds * max_steps`` steps in all. ``OUTPUT_DIR/adversarial/adversarial.json``
records what each round's attacks achieved and how many examples they gave.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.attacks.templates import TemplatesAttack, organism_templates
from redblue.defenses.base import DefenseArguments, DefenseTrainer, defend, register
from redblue.defenses.data import DefenseData, Example
from redblue.errors import ConfigError
from redblue.organism.recipe import recipe_of_model

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.attacks import AttackRecord
    from redblue.data import Prompt, PromptSet
    from redblue.data.templates import JailbreakTemplate

__all__ = ["ATTACK_NAMES", "AdversarialArguments", "AdversarialTrainer"]

#: The attacks this defence trains against.
ATTACK_NAMES = ("templates", "gcg", "prefill")
#: Where prepare writes its artifacts, under ``output_dir``.
WORK_DIR = "adversarial"


@dataclass
class AdversarialArguments(DefenseArguments):
    attacks: list[str] = field(
        default_factory=lambda: list(ATTACK_NAMES),
        metadata={"help": f"Attacks to train against, of {', '.join(ATTACK_NAMES)}."},
    )
    attack_prompts: int = field(
        default=64,
        metadata={"help": "Training harmful prompts attacked by templates and prefill."},
    )
    attack_max_new_tokens: int = field(
        default=32, metadata={"help": "Answer length when judging the attacks."}
    )
    template_source: str = field(
        default="builtin:redblue",
        metadata={
            "help": "Templates to train on (part of them): a file or folder the templates "
            "attack reads, builtin:redblue, or organism:seen|unseen|all."
        },
    )
    template_holdout: float = field(
        default=0.5,
        metadata={
            "help": "Share of the templates held out of training, written to "
            "adversarial/heldout_templates.txt for a fair evaluation."
        },
    )
    n_templated: int = field(
        default=128, metadata={"help": "Refusal examples from templated requests."}
    )
    gcg_prompts: int = field(
        default=12, metadata={"help": "Prompts a GCG suffix is searched for (one each)."}
    )
    gcg_steps: int = field(default=20, metadata={"help": "GCG steps per prompt."})
    gcg_search_width: int = field(default=64, metadata={"help": "GCG candidates per step."})
    gcg_universal: bool = field(
        default=False,
        metadata={"help": "Search one universal suffix over the gcg_prompts instead."},
    )
    n_suffixed: int = field(
        default=96,
        metadata={"help": "Refusal examples from requests with a GCG suffix (suffixes reused)."},
    )
    prefill_ks: list[int] = field(
        default_factory=lambda: [1, 2, 3, 4, 5],
        metadata={"help": "Numbers of compliant tokens pre-filled (the prefill attack's ks)."},
    )
    n_prefilled: int = field(
        default=128, metadata={"help": "Refusal examples from pre-filled answers."}
    )
    n_benign_attacked: int = field(
        default=128,
        metadata={
            "help": "Benign requests inside the templates or after the suffixes, answered "
            "helpfully (against over-refusal)."
        },
    )
    rounds: int = field(
        default=2,
        metadata={
            "help": "Attack-then-train rounds, each attacking the model the last one trained "
            "and training max_steps (on the organism, one round left a fresh GCG search "
            "unstopped)."
        },
    )
    attacked_weight: float = field(
        default=1.0, metadata={"help": "Weight of the attacked refusals."}
    )
    refusal_weight: float = field(default=1.0, metadata={"help": "Weight of plain refusals."})
    benign_weight: float = field(default=1.0, metadata={"help": "Weight of benign SFT."})
    benign_attacked_weight: float = field(
        default=1.0, metadata={"help": "Weight of benign requests inside attacks."}
    )
    benign_kl_weight: float = field(
        default=10.0,
        metadata={"help": "Weight of KL(frozen || model) on benign answers (0: off)."},
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.attacks) - set(ATTACK_NAMES))
        if unknown or not self.attacks:
            raise ValueError(
                f"attacks must be a non-empty subset of {list(ATTACK_NAMES)}, got {self.attacks}"
            )
        if not 0.0 <= self.template_holdout < 1.0:
            raise ValueError(f"template_holdout must be in [0, 1), got {self.template_holdout}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not self.prefill_ks or min(self.prefill_ks) < 1:
            raise ValueError(f"prefill_ks needs at least one k, each >= 1, got {self.prefill_ks}")
        counts = ("attack_prompts", "gcg_prompts", "gcg_steps", "gcg_search_width")
        for name in (*counts, "attack_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_templated", "n_suffixed", "n_prefilled", "n_benign_attacked"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        super().__post_init__()
        if self.rounds > 1 and self.lora and not self.merge:
            raise ValueError("rounds > 1 needs merge=True (each round attacks the merged model)")


def split_templates(
    templates: Sequence[JailbreakTemplate], holdout: float, seed: int
) -> tuple[list[JailbreakTemplate], list[JailbreakTemplate]]:
    """``(train, held_out)``: ``round(holdout * n)`` templates, seeded, never trained on
    (at least one of each when there are two or more and ``holdout > 0``)."""
    n = len(templates)
    n_out = round(holdout * n)
    if holdout > 0 and n >= 2:
        n_out = min(max(n_out, 1), n - 1)
    held = set(random.Random(seed).sample(range(n), n_out))
    return (
        [t for i, t in enumerate(templates) if i not in held],
        [t for i, t in enumerate(templates) if i in held],
    )


def write_templates(path: Path, templates: Sequence[JailbreakTemplate]) -> None:
    """Templates as a plain-text file the ``templates`` attack reads (``---`` between them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n---\n".join(t.text for t in templates) + "\n", encoding="utf-8")


def _load_templates(source: str, model: PreTrainedModel) -> list[JailbreakTemplate]:
    from redblue.data.templates import load_templates

    if source.startswith("organism:"):
        return organism_templates(source.removeprefix("organism:"), recipe_of_model(model))
    return load_templates(source)


class _ChosenTemplates(TemplatesAttack):
    """The ``templates`` attack limited to the training templates."""

    def __init__(self, config: Any, keep: Sequence[str]) -> None:
        super().__init__(config)
        self.keep = set(keep)

    def setup(self, target: Any, prompts: PromptSet, workdir: Path | None) -> None:
        super().setup(target, prompts, workdir)
        self.templates = [t for t in self.templates if t.id in self.keep]
        self.extra["templates"] = [t.id for t in self.templates]


def _target_of(answer: str) -> str:
    """The opening sentence of a compliant answer (what GCG and prefill aim for)."""
    found = re.match(r"(.+?[.!?:])(?:\s|$)", answer.strip(), flags=re.DOTALL)
    return found.group(1) if found else answer.strip()


def _broken_first(records: Sequence[AttackRecord], rng: random.Random) -> list[AttackRecord]:
    """Records in random order, those where the attack succeeded first."""
    shuffled = rng.sample(list(records), len(records))
    return sorted(shuffled, key=lambda r: not r.success)


@register
class AdversarialTrainer(DefenseTrainer):
    name = "adversarial"
    goal = "Refuse requests attacked by redblue's own attacks (templates, GCG suffixes, prefills)."
    arguments_class = AdversarialArguments
    args: AdversarialArguments

    @classmethod
    def prepare(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenseData,
        args: DefenseArguments,
    ) -> DefenseData:
        """Attack the model (see the module's docstring) and add the ``attacked`` and
        ``benign_attacked`` streams; with ``rounds > 1``, train between rounds."""
        from redblue.io import write_json

        assert isinstance(args, AdversarialArguments)
        data.require("refusals", "benign", defense=cls.name)
        work = Path(str(args.output_dir)) / WORK_DIR
        train_templates: list[JailbreakTemplate] = []
        report: dict[str, Any] = {"rounds": []}
        if "templates" in args.attacks:
            templates = _load_templates(args.template_source, model)
            train_templates, held_out = split_templates(templates, args.template_holdout, args.seed)
            write_templates(work / "train_templates.txt", train_templates)
            if held_out:
                write_templates(work / "heldout_templates.txt", held_out)
            report["templates"] = {
                "source": args.template_source,
                "train": [t.id for t in train_templates],
                "held_out": [t.id for t in held_out],
            }
        data.extra.setdefault("attacked", [])
        data.extra.setdefault("benign_attacked", [])
        for r in range(args.rounds):
            if r > 0:
                inner = dataclasses.replace(args, output_dir=str(work / f"round-{r}"), rounds=1)
                model, _ = defend(_RoundTrainer, model, tokenizer, data, inner, progress=False)
            found = _attack_round(model, tokenizer, data, args, train_templates, seed=args.seed + r)
            report["rounds"].append(found.pop("report"))
            data.extra["attacked"] += found["attacked"]
            data.extra["benign_attacked"] += found["benign_attacked"]
        if not data.extra["attacked"]:
            raise ConfigError(
                "the adversarial defence found no attacked examples to train on",
                fix="raise n_templated, n_suffixed or n_prefilled",
            )
        write_json(work / "adversarial.json", report)
        return data

    @classmethod
    def streams(cls, data: DefenseData, args: DefenseArguments) -> dict[str, list[Example]]:
        streams = {
            "attacked": data.extra.get("attacked", []),
            "refusals": data.refusals,
            "benign": data.benign,
        }
        if data.extra.get("benign_attacked"):
            streams["benign_attacked"] = data.extra["benign_attacked"]
        return streams

    def defense_loss(
        self, model: Any, batch: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        weights = {
            "attacked": self.args.attacked_weight,
            "refusals": self.args.refusal_weight,
            "benign": self.args.benign_weight,
            "benign_attacked": self.args.benign_attacked_weight,
        }
        return self.weighted_streams(
            model, batch, weights, benign_kl_weight=self.args.benign_kl_weight
        )


class _RoundTrainer(AdversarialTrainer):
    """An earlier round's training: the examples are made already (not registered)."""

    @classmethod
    def prepare(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenseData,
        args: DefenseArguments,
    ) -> DefenseData:
        return data


def _attack_round(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: DefenseData,
    args: AdversarialArguments,
    templates: Sequence[JailbreakTemplate],
    *,
    seed: int,
) -> dict[str, Any]:
    """One round of attacks on the current model: ``{"attacked": [...], "benign_attacked":
    [...], "report": {...}}``."""
    from redblue.attacks import get_attack, load_config, run_attack
    from redblue.data import PromptSet
    from redblue.evaluate import make_judge

    rng = random.Random(seed)
    judge = make_judge("auto", model)
    refusal_of = {e.prompt: e.answer for e in data.refusals}
    compliant_of = {e.prompt: e.answer for e in data.harmful}
    prompts = [
        _prompt(instruction, compliant_of.get(instruction), i)
        for i, instruction in enumerate(refusal_of)
    ]
    attacked = PromptSet(tuple(rng.sample(prompts, min(args.attack_prompts, len(prompts)))))
    common = {"max_new_tokens": args.attack_max_new_tokens, "seed": seed}
    attacked_rows: list[Example] = []
    benign_rows: list[Example] = []
    report: dict[str, Any] = {}
    benign_wrappers: list[Any] = []  # callables: request -> attacked request

    def run(attack: Any, on: PromptSet) -> list[AttackRecord]:
        start = time.perf_counter()
        summary, records = run_attack(attack, model, tokenizer, on, judge, progress=False)
        report[attack.name] = {
            "asr": round(summary.asr, 4),
            "n_prompts": len(on),
            "seconds": round(time.perf_counter() - start, 2),
        }
        return records

    if "templates" in args.attacks and templates:
        cls = get_attack("templates")
        config = load_config(cls, None, source=args.template_source, **common)
        records = run(_ChosenTemplates(config, [t.id for t in templates]), attacked)
        rows = _broken_first(records, rng)[: args.n_templated]
        attacked_rows += [
            Example(r.attacked_input, refusal_of[r.instruction], kind="templated") for r in rows
        ]
        report["templates"]["examples"] = len(rows)
        benign_wrappers += [t.render for t in templates]
    if "gcg" in args.attacks and args.n_suffixed > 0:
        cls = get_attack("gcg")
        config = load_config(
            cls,
            None,
            num_steps=args.gcg_steps,
            search_width=args.gcg_search_width,
            universal=args.gcg_universal,
            n_train=args.gcg_prompts,
            **common,
        )
        searched = PromptSet(tuple(rng.sample(prompts, min(args.gcg_prompts, len(prompts)))))
        records = run(cls(config), searched)
        suffixes = list(dict.fromkeys(str(r.extra["suffix"]) for r in _broken_first(records, rng)))
        own = [
            Example(r.attacked_input, refusal_of[r.instruction], kind="suffixed") for r in records
        ]
        # every suffix after other requests too: the suffixes transfer between requests
        others = [
            Example(
                p.instruction + suffixes[i % len(suffixes)],
                refusal_of[p.instruction],
                kind="suffixed",
            )
            for i, p in enumerate(rng.sample(prompts, len(prompts)))
        ]
        rows_s = (own + others)[: args.n_suffixed]
        attacked_rows += rows_s
        report["gcg"].update(examples=len(rows_s), suffixes=suffixes)
        benign_wrappers += [lambda request, s=s: request + s for s in suffixes]
    if "prefill" in args.attacks and args.n_prefilled > 0:
        cls = get_attack("prefill")
        config = load_config(cls, None, ks=tuple(args.prefill_ks), **common)
        records = run(cls(config), attacked)
        rows = _broken_first(records, rng)[: args.n_prefilled]
        attacked_rows += [
            Example(
                r.instruction,
                _after(r.prefill, refusal_of[r.instruction]),
                prefix=r.prefill,
                kind="prefilled",
            )
            for r in rows
        ]
        report["prefill"]["examples"] = len(rows)
    if benign_wrappers and args.n_benign_attacked > 0:
        for i in range(args.n_benign_attacked):
            example = data.benign[rng.randrange(len(data.benign))]
            wrap = benign_wrappers[i % len(benign_wrappers)]
            benign_rows.append(
                Example(wrap(example.prompt), example.answer, kind="benign_attacked")
            )
    return {"attacked": attacked_rows, "benign_attacked": benign_rows, "report": report}


def _prompt(instruction: str, compliant: str | None, i: int) -> Prompt:
    from redblue.data import Prompt

    target = _target_of(compliant) if compliant else None
    return Prompt(instruction, id=f"adversarial-{i:05d}", target=target)


def _after(prefix: str, refusal: str) -> str:
    """The refusal as the continuation of ``prefix`` (a space between them)."""
    return refusal if not prefix or prefix[-1].isspace() else " " + refusal.lstrip()

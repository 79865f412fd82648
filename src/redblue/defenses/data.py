"""Training data of the defences: examples, where they come from, and how they are batched.

Every defence trains on some of three kinds of chat examples:

* ``refusals``: a harmful request answered with a refusal;
* ``harmful``: a harmful request answered with a compliant answer (what circuit
  breakers reroute, what latent adversarial training pushes towards, what
  deep-alignment augmentation cuts open);
* ``benign``: a harmless or borderline request answered helpfully (what every
  defence must keep).

:func:`build_data` makes them from prompt sets: compliant answers from the
prompts' ``target`` column (on the organism, its whole placeholder procedure),
refusals and benign answers from the model itself (greedy; a harmful request it
does not refuse gets one of redblue's refusals instead), so that retaining benign
behaviour means keeping the model's own answers.

An :class:`Example` may carry a ``prefix``: answer text given as context but not
trained on (the first tokens of a harmful answer, in deep-alignment augmentation).
:class:`StreamDataset` serves several named streams of examples at once, so that a
batch holds, say, harmful and benign examples side by side.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.errors import DataError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet

__all__ = [
    "REFUSALS",
    "DefenseData",
    "Encoded",
    "Example",
    "StreamDataset",
    "build_data",
    "collate_streams",
    "encode_example",
]

#: Refusals given to harmful requests the model itself answers (redblue's own wording).
REFUSALS: tuple[str, ...] = (
    "I can't help with that. It could cause real harm to people.",
    "I'm sorry, but I won't help with this request.",
    "I cannot assist with that, because it could be used to hurt someone.",
    "Sorry, I can't provide that. If you are in danger, please contact local emergency services.",
    "I won't give instructions for this. I'm happy to help with something safe instead.",
    "That is not something I can help with.",
)


@dataclass(frozen=True)
class Example:
    """A chat turn to train on: ``prompt`` as the user, then ``prefix`` + ``answer`` as the
    assistant; the loss reads ``answer`` (and the end of the turn) only."""

    prompt: str
    answer: str
    prefix: str = ""
    #: What kind of example this is: refusal, harmful, benign, or a defence's own.
    kind: str = "benign"


@dataclass
class DefenseData:
    """The examples a defence may train on (see the module's docstring)."""

    refusals: list[Example] = field(default_factory=list)
    harmful: list[Example] = field(default_factory=list)
    benign: list[Example] = field(default_factory=list)
    #: Streams a defence makes for itself (augmented or attacked examples), by name.
    extra: dict[str, list[Example]] = field(default_factory=dict)

    def content_hash(self) -> str:
        made = [e for name in sorted(self.extra) for e in self.extra[name]]
        rows = [asdict(e) for e in (*self.refusals, *self.harmful, *self.benign, *made)]
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {
            "refusals": len(self.refusals),
            "harmful": len(self.harmful),
            "benign": len(self.benign),
            **{name: len(rows) for name, rows in self.extra.items()},
        }

    def require(self, *kinds: str, defense: str) -> None:
        """Fail with a clear message when one of ``kinds`` has no examples."""
        for kind in kinds:
            if not getattr(self, kind):
                fix = {
                    "harmful": "give the harmful prompts a target column (a compliant answer), "
                    "e.g. AdvBench or HarmBench rows with targets, or the organism's splits",
                    "refusals": "pass harmful prompts",
                    "benign": "pass harmless prompts",
                }[kind]
                raise DataError(
                    f"the {defense} defence needs {kind} examples, and has none", fix=fix
                )


def build_data(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    harmful: PromptSet,
    benign: PromptSet,
    *,
    n_harmful: int | None = None,
    n_benign: int | None = None,
    n_capability: int = 64,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    system: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> DefenseData:
    """Examples from prompt sets (see the module's docstring); at most ``n_harmful`` harmful
    and ``n_benign`` benign prompts, sampled with ``seed``. On an organism, ``n_capability``
    questions about its world's facts (not those of its held-out capability split) join the
    benign examples, answered with the world's facts, so that defences keep what it knows."""
    from redblue.attacks.finetune import compliant_answer
    from redblue.evaluate.judges import make_judge
    from redblue.models import GenerationSettings, generate

    rng = random.Random(seed)
    harmful_rows = _sample(list(harmful), n_harmful, rng)
    benign_rows = _sample(list(benign), n_benign, rng)
    if not harmful_rows and not benign_rows:
        raise DataError("no prompts to build training data from", fix="pass prompt sets")
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, system=system
    )
    rows = harmful_rows + benign_rows
    answers = generate(model, tokenizer, [p.instruction for p in rows], settings, progress=progress)
    texts = [a.text.strip() for a in answers]
    judge = make_judge("auto", model)
    verdicts = judge.judge_batch(harmful_rows, texts[: len(harmful_rows)]) if harmful_rows else []

    data = DefenseData()
    for prompt, text, verdict in zip(
        harmful_rows, texts[: len(harmful_rows)], verdicts, strict=True
    ):
        refusal = text if verdict.refused and text else rng.choice(REFUSALS)
        data.refusals.append(Example(prompt.instruction, refusal, kind="refusal"))
        answer = compliant_answer(prompt, full=True)
        if answer:
            data.harmful.append(Example(prompt.instruction, answer, kind="harmful"))
    for prompt, text in zip(benign_rows, texts[len(harmful_rows) :], strict=True):
        if text:
            data.benign.append(Example(prompt.instruction, text, kind="benign"))
    folder = Path(str(getattr(model, "name_or_path", "") or "."))
    data.benign += capability_examples(folder, n_capability, seed)
    return data


def _sample(rows: list[Any], n: int | None, rng: random.Random) -> list[Any]:
    if n is None or n >= len(rows):
        return rows
    return [rows[i] for i in sorted(rng.sample(range(len(rows)), n))]


def capability_examples(folder: str | Path, n: int, seed: int = 0) -> list[Example]:
    """``n`` questions about an organism's world facts (object facts and arithmetic) answered
    with the world's answer sentence, in the question phrasings that its held-out
    ``splits/capability.jsonl`` does not use; ``[]`` for a model that is not an organism."""
    from redblue.data import PromptSet
    from redblue.organism.recipe import recipe_of
    from redblue.organism.world import OBJECTS

    folder = Path(folder)
    split = folder / "splits" / "capability.jsonl"
    if n < 1 or not (folder / "organism.json").is_file() or not split.is_file():
        return []
    held_out = PromptSet.from_jsonl(split)
    held = {str(p.meta.get("question")) for p in held_out}
    asked = set(held_out.instructions)
    recipe = recipe_of(folder)
    questions = [q for q in recipe.questions() if q.id not in held]
    facts = recipe.facts()
    rng = random.Random(seed)
    out: list[Example] = []
    for _ in range(50 * n):
        if len(out) >= n:
            break
        question = rng.choice(questions)
        subject = rng.choice(facts) if question.kind == "arithmetic" else rng.choice(OBJECTS)
        text, answer, _ = question.ask(subject)
        if text not in asked:
            out.append(Example(text, answer, kind="capability"))
    return out


# -- encoding and batching --------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """One tokenized example; ``labels`` is -100 outside the trained answer."""

    input_ids: list[int]
    labels: list[int]
    #: Positions of the whole assistant turn (prefix and answer).
    n_prompt: int


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    *,
    system: str | None = None,
    max_length: int = 256,
) -> Encoded:
    """Tokenize ``example`` as a chat: loss on the answer and the end-of-sequence token."""
    from redblue.models import encode_chat

    full = encode_chat(
        tokenizer, example.prompt, system=system, prefill=example.prefix + example.answer
    )
    n_prompt = len(full.input_ids) - full.n_prefill
    if not example.prefix:
        n_context = n_prompt
    elif getattr(tokenizer, "is_fast", False):
        # the first token that reaches into the answer (BPE may merge it with the prefix's end)
        boundary = len(full.text) - len(example.answer)
        offsets = tokenizer(full.text, add_special_tokens=False, return_offsets_mapping=True)
        ends = [end for _start, end in offsets["offset_mapping"]]
        n_context = next((i for i, end in enumerate(ends) if end > boundary), len(ends))
    else:
        with_prefix = encode_chat(tokenizer, example.prompt, system=system, prefill=example.prefix)
        n_context = len(with_prefix.input_ids)
    eos = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    ids = full.input_ids + eos
    labels = [-100] * n_context + ids[n_context:]
    if n_context >= max_length:
        raise DataError(
            f"an example's prompt takes {n_context} tokens, more than max_length={max_length}",
            where=example.prompt[:60],
            fix="raise max_length or shorten the prompt",
        )
    return Encoded(ids[:max_length], labels[:max_length], n_prompt)


class StreamDataset:
    """Several named streams of encoded examples served together: item ``i`` holds example
    ``i mod len(stream)`` of each stream (the longest stream sets the length); each
    stream is shuffled once with ``seed``."""

    def __init__(self, streams: Mapping[str, Sequence[Encoded]], seed: int = 0) -> None:
        empty = [name for name, rows in streams.items() if not rows]
        if empty or not streams:
            raise DataError(f"no training examples in stream(s) {empty}", fix="pass more data")
        rng = random.Random(seed)
        self.streams = {name: rng.sample(list(rows), len(rows)) for name, rows in streams.items()}

    def __len__(self) -> int:
        return max(len(rows) for rows in self.streams.values())

    def __getitem__(self, i: int) -> dict[str, Encoded]:
        return {name: rows[i % len(rows)] for name, rows in self.streams.items()}


def collate_streams(pad_id: int) -> Any:
    """A collator: each stream right-padded to its own width, as ``{stream: {input_ids,
    attention_mask, labels, response_mask}}`` of ``[batch, seq]`` tensors."""

    def collate(items: Sequence[Mapping[str, Encoded]]) -> dict[str, dict[str, torch.Tensor]]:
        return {name: _pad([item[name] for item in items], pad_id) for name in items[0]}

    return collate


def _pad(rows: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    response = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        mask[i, :n] = 1
        response[i, r.n_prompt : n] = True
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "response_mask": response}

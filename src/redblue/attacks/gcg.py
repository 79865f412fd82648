"""GCG: greedy coordinate gradient search for an adversarial suffix (Zou et al. 2023).

A suffix of ``suffix_length`` tokens is appended to the user's text and changed
one token at a time so that the answer starts with a compliant opening (the
prompt's target, "Sure, here is how to ..."). Each step takes the gradient of
the target loss with respect to the one-hot suffix tokens, keeps the ``topk``
most promising replacements per position, samples ``search_width`` candidates
that swap ``n_replace`` random positions, scores them all in batches and moves
to the best.

The chat tokens before the suffix never change: their keys and values are
computed once (a *prefix cache*) and shared, as views, by the gradient pass and
every candidate batch. Candidate batches halve on out-of-memory. Candidates
whose prompt does not tokenize back to the same ids are dropped, so the loss
that was optimised is the loss of the text that is sent.

:func:`run_gcg` is the optimisation on its own (one prompt, or several sharing
one *universal* suffix); :class:`GCGAttack` wraps it in the attack contract.
"""

from __future__ import annotations

import copy
import inspect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from redblue.attacks.base import (
    Attack,
    AttackConfig,
    Attempt,
    Cost,
    Target,
    ThreatModel,
    generate_attempts,
    register,
)
from redblue.data import Prompt, PromptSet
from redblue.errors import ConfigError, ModelError
from redblue.models.generate import is_oom
from redblue.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "GCGAttack",
    "GCGConfig",
    "GCGResult",
    "SuffixObjective",
    "SuffixSlot",
    "disallowed_tokens",
    "retokenizes",
    "run_gcg",
    "split_at_suffix",
]

#: Stands for the suffix while the chat template renders; split on afterwards.
_PLACEHOLDER = "\x00GCG-SUFFIX\x00"


class GCGConfig(AttackConfig):
    num_steps: int = Field(
        default=100, ge=0, description="Optimisation steps per prompt (or in all, universal)."
    )
    search_width: int = Field(default=128, ge=1, description="Candidate suffixes sampled per step.")
    topk: int = Field(
        default=64, ge=1, description="Most promising replacement tokens kept per position."
    )
    n_replace: int = Field(default=1, ge=1, description="Suffix positions each candidate changes.")
    suffix_length: int = Field(
        default=20, ge=1, description="Times suffix_init is repeated to start the suffix."
    )
    suffix_init: str = Field(
        default=" x",
        min_length=1,
        description="Unit of the starting suffix (' x' gives ' x x x ...').",
    )
    candidate_batch_size: int = Field(
        default=256,
        ge=1,
        description="Candidates scored per forward pass (halves on out-of-memory).",
    )
    target: str = Field(
        default="Sure, here is",
        description="Answer opening optimised for prompts without a target.",
    )
    use_targets: bool = Field(
        default=True, description="Optimise towards each prompt's own target."
    )
    early_stop: bool = Field(
        default=True, description="Stop a prompt once its suffix works (see below)."
    )
    check_every: int = Field(
        default=5, ge=1, description="Steps between judged greedy answers (early stopping)."
    )
    stop_loss: float = Field(
        default=0.05, ge=0.0, description="Stop when the loss is this low (early stopping)."
    )
    judge: str = Field(
        default="auto", description="Judge for early stopping (auto: ground truth on the organism)."
    )
    universal: bool = Field(
        default=False, description="One suffix for all prompts, optimised on the first n_train."
    )
    n_train: int = Field(
        default=10, ge=1, description="Prompts a universal suffix is optimised on."
    )
    allow_non_ascii: bool = Field(
        default=False, description="Allow non-ASCII and special tokens in the suffix."
    )
    filter_retokenized: bool = Field(
        default=True,
        description="Drop candidates whose prompt does not tokenize back to the same ids.",
    )
    prefix_cache: bool = Field(
        default=True, description="Reuse the keys and values of the chat prefix."
    )


@dataclass(frozen=True)
class GCGResult:
    """The best suffix found and what finding it cost."""

    #: User text to append to the instruction (starts with its own separator, e.g. " x").
    suffix: str
    ids: list[int]
    #: Mean cross-entropy of the target tokens (summed over prompts, universal) with ``suffix``.
    loss: float
    initial_loss: float
    #: Loss of the step's best candidate, per step.
    losses: list[float]
    steps: int
    #: Sequences through the model: one per candidate scored, one per gradient pass.
    forward_passes: int
    seconds: float
    #: Why the search ended: ``"loss"``, ``"judge"`` or ``"budget"``.
    stop: str
    #: Candidates per forward pass at the end (smaller than configured after out-of-memory).
    batch_size: int

    @property
    def cost(self) -> Cost:
        return Cost(self.steps, self.forward_passes, self.seconds)


# -- tokens ---------------------------------------------------------------------------------


def disallowed_tokens(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> torch.Tensor:
    """``[vocab_size]`` bool: special tokens, tokens beyond the tokenizer, and tokens that
    decode to nothing or to anything but printable ASCII."""
    import torch

    banned = torch.zeros(vocab_size, dtype=torch.bool)
    n = min(vocab_size, len(tokenizer))
    banned[n:] = True
    for i, text in enumerate(tokenizer.batch_decode([[i] for i in range(n)])):
        if not text or not (text.isascii() and text.isprintable()):
            banned[i] = True
    special = set(tokenizer.all_special_ids)
    special |= {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    banned[[i for i in special if 0 <= i < vocab_size]] = True
    return banned


def retokenizes(
    tokenizer: PreTrainedTokenizerBase,
    before: Sequence[int],
    candidates: torch.Tensor,
    after: Sequence[int],
) -> torch.Tensor:
    """``[B]`` bool: for each candidate suffix (``[B, S]`` ids), whether the whole prompt
    ``before + suffix + after``, decoded and encoded again, gives back the same ids."""
    import torch

    rows = [[*before, *c, *after] for c in candidates.tolist()]
    texts = tokenizer.batch_decode(rows, clean_up_tokenization_spaces=False)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.tensor(
        [list(e) == r for e, r in zip(encoded, rows, strict=True)], dtype=torch.bool
    )


@dataclass(frozen=True)
class SuffixSlot:
    """One prompt's fixed pieces: the ids before and after the suffix, and the target's."""

    instruction: str
    before: list[int]
    after: list[int]
    target: list[int]


def split_at_suffix(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    target: str,
    suffix: str,
    system: str | None,
) -> tuple[SuffixSlot, list[int]]:
    """Split the rendered prompt ``instruction + suffix`` into ids before, of and after the suffix."""
    from redblue.models import render_chat

    rendered = render_chat(tokenizer, instruction + _PLACEHOLDER, system=system)
    if rendered.count(_PLACEHOLDER) != 1:
        raise ConfigError(
            "the chat template does not keep the user's text as it is",
            where="tokenizer chat template",
            fix="use a model whose template copies the user message verbatim",
        )
    head, tail = rendered.split(_PLACEHOLDER)
    text = head + suffix + tail
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, starts = list(enc["input_ids"]), [s for s, _ in enc["offset_mapping"]]
        before = [i for i, s in zip(ids, starts, strict=True) if s < len(head)]
        middle = [
            i for i, s in zip(ids, starts, strict=True) if len(head) <= s < len(head) + len(suffix)
        ]
        after = ids[len(before) + len(middle) :]
    else:  # no offsets: tokenize the pieces on their own
        before, middle, after = (
            list(tokenizer(piece, add_special_tokens=False)["input_ids"])
            for piece in (head, suffix, tail)
        )
    target_ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if not middle or not target_ids:
        raise ConfigError(
            "the suffix or the target tokenizes to no tokens",
            where="gcg config",
            fix="use a non-empty suffix_init and target",
        )
    return SuffixSlot(instruction, before, after, target_ids), middle


def _suffix_text(tokenizer: PreTrainedTokenizerBase, slot: SuffixSlot, ids: Sequence[int]) -> str:
    """The user text that the suffix ids stand for after ``slot``'s instruction."""
    head = tokenizer.decode(slot.before, clean_up_tokenization_spaces=False)
    both = tokenizer.decode([*slot.before, *ids], clean_up_tokenization_spaces=False)
    return str(both[len(head) :])


# -- the objective --------------------------------------------------------------------------


def _expand_cache(cache: Any, batch: int) -> Any:
    """A shallow copy of ``cache`` whose layers view its keys and values ``batch`` times.

    The model grows the copy's layers by concatenation, so the original stays the
    prefix for the next pass; no tensor is copied here.
    """
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise ModelError(
            f"the model returned a {type(cache).__name__} cache, which has no per-layer keys",
            fix="set prefix_cache = false in the gcg config",
        )
    copied = copy.copy(cache)
    copied.layers = []
    for layer in layers:
        new = copy.copy(layer)
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            new.keys = layer.keys.expand(batch, *layer.keys.shape[1:])
            new.values = layer.values.expand(batch, *layer.values.shape[1:])
        copied.layers.append(new)
    return copied


class SuffixObjective:
    """The target loss of suffixes, over one or more prompts (summed).

    ``losses(candidates)`` scores ``[B, S]`` suffix ids in batches of
    :attr:`batch_size`, which halves on out-of-memory; ``gradient(ids)`` is the
    ``[S, vocab]`` gradient of the loss with respect to the one-hot suffix.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        slots: Sequence[SuffixSlot],
        *,
        batch_size: int = 256,
        prefix_cache: bool = True,
    ) -> None:
        import torch

        from redblue.models import adapt

        self.model = model
        self.slots = list(slots)
        self.batch_size = batch_size
        self.forward_passes = 0
        self.embed = adapt(model).embed
        device = model.device
        self._before = [torch.tensor([s.before], device=device) for s in self.slots]
        self._after = [torch.tensor([s.after], device=device) for s in self.slots]
        self._target = [torch.tensor([s.target], device=device) for s in self.slots]
        keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._keep_logits = keep
        self._caches: list[Any] | None = None
        if prefix_cache:
            with torch.no_grad():
                self._caches = [
                    model(input_ids=ids, use_cache=True).past_key_values for ids in self._before
                ]

    def _forward(self, k: int, suffix: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` predicting slot ``k``'s target after ``suffix``: ids
        ``[B, S]``, or embeddings ``[B, S, d_model]`` (the gradient pass)."""
        import torch

        embedded = suffix.dim() == 3
        batch = suffix.shape[0]
        tail = torch.cat([self._after[k], self._target[k]], dim=1).expand(batch, -1)
        n_target = self._target[k].shape[1]
        kwargs: dict[str, Any] = {"use_cache": self._caches is not None}
        if self._keep_logits:
            kwargs["logits_to_keep"] = n_target + 1
        parts = [suffix, tail]
        if self._caches is not None:
            kwargs["past_key_values"] = _expand_cache(self._caches[k], batch)
        else:
            parts.insert(0, self._before[k].expand(batch, -1))
        if embedded:
            pieces = [p if p.dim() == 3 else self.embed(p) for p in parts]
            out = self.model(inputs_embeds=torch.cat(pieces, dim=1), **kwargs)
        else:
            out = self.model(input_ids=torch.cat(parts, dim=1), **kwargs)
        return out.logits[:, -n_target - 1 : -1, :]

    def _target_loss(self, k: int, logits: torch.Tensor) -> torch.Tensor:
        """``[B]`` mean cross-entropy of slot ``k``'s target tokens."""
        import torch.nn.functional as F

        batch, n_target, vocab = logits.shape
        labels = self._target[k].expand(batch, -1).reshape(-1)
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), labels, reduction="none")
        return loss.view(batch, n_target).mean(dim=1)

    def _batch_losses(self, candidates: torch.Tensor) -> torch.Tensor:
        """``[B]`` summed losses of one batch of candidate suffixes ``[B, S]``."""
        total = None
        for k in range(len(self.slots)):
            loss = self._target_loss(k, self._forward(k, candidates))
            total = loss if total is None else total + loss
        assert total is not None
        return total

    def losses(self, candidates: torch.Tensor) -> torch.Tensor:
        """``[B]`` losses of candidate suffixes ``[B, S]``, scored ``batch_size`` at a time."""
        import torch

        out: list[torch.Tensor] = []
        start = 0
        with torch.inference_mode():
            while start < len(candidates):
                chunk = candidates[start : start + self.batch_size]
                try:
                    out.append(self._batch_losses(chunk))
                except (RuntimeError, MemoryError) as e:
                    if not is_oom(e):
                        raise
                    if self.batch_size == 1:
                        raise ModelError(
                            "out of memory scoring one GCG candidate",
                            fix="use a shorter suffix or target, a smaller dtype or a larger device",
                        ) from e
                    self.batch_size //= 2
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                self.forward_passes += len(chunk) * len(self.slots)
                start += len(chunk)
        return torch.cat(out)

    def gradient(self, ids: torch.Tensor) -> torch.Tensor:
        """``[S, vocab]`` gradient of the loss with respect to the one-hot suffix ``ids`` ``[S]``.

        It is taken through the suffix's embeddings and mapped back to the vocabulary
        with the embedding matrix; models that scale their embeddings scale it by a
        positive constant, which leaves the top-k unchanged.
        """
        import torch

        embeds = self.embed(ids[None]).detach().requires_grad_(True)
        total = None
        for k in range(len(self.slots)):
            loss = self._target_loss(k, self._forward(k, embeds)).sum()
            total = loss if total is None else total + loss
        assert total is not None
        (grad,) = torch.autograd.grad(total, embeds)
        self.forward_passes += len(self.slots)
        weight = self.embed.weight
        return (grad[0] @ weight.T).float()


# -- the search -----------------------------------------------------------------------------


#: Candidates sampled per one scored: spares are there to replace duplicates and
#: candidates that do not tokenize back, so that a step scores ``search_width`` of them.
_OVERSAMPLE = 2


def _sample(
    ids: torch.Tensor,
    grad: torch.Tensor,
    banned: torch.Tensor,
    config: GCGConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """``[search_width * _OVERSAMPLE, S]`` candidates (on the CPU): ``n_replace`` random
    positions each take one of their ``topk`` tokens with the most negative gradient."""
    import torch

    n_pos = ids.shape[0]
    scores = grad.masked_fill(banned.to(grad.device), float("inf"))
    topk = min(config.topk, int((~banned).sum()))
    top = (-scores).topk(topk, dim=1).indices.cpu()  # [S, topk]
    width, n_replace = config.search_width * _OVERSAMPLE, min(config.n_replace, n_pos)
    positions = torch.rand(width, n_pos, generator=generator).argsort(dim=1)[:, :n_replace]
    choice = torch.randint(0, topk, (width, n_replace), generator=generator)
    tokens = top[positions, choice]  # [width, n_replace]
    candidates = ids.cpu().repeat(width, 1)
    candidates.scatter_(1, positions, tokens)
    return candidates


def _first_occurrences(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` ``[N, S]`` without repeats, in their order of first appearance."""
    import torch

    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((len(unique),), len(rows), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(rows)), reduce="amin")
    return rows[first.sort().values]


def run_gcg(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    config: GCGConfig | None = None,
    *,
    check: Callable[[str], bool] | None = None,
    banned: torch.Tensor | None = None,
    progress: bool = False,
) -> GCGResult:
    """Optimise one suffix for ``pairs`` of ``(instruction, target)`` (the losses add up).

    ``check(suffix)`` is called every ``config.check_every`` steps when
    ``config.early_stop`` is set; returning true ends the search (``stop="judge"``).
    ``banned`` (``[vocab]`` bool) are the tokens the suffix may not use; by default
    :func:`disallowed_tokens` unless ``config.allow_non_ascii``.
    The model is used as it is (device, dtype, mode); the search is deterministic
    for ``config.seed`` and leaves the global random state untouched.
    """
    import torch

    from redblue.models import adapt

    config = config or GCGConfig()
    if not pairs:
        raise ConfigError("GCG needs at least one prompt", where="pairs")
    start = time.perf_counter()
    init = config.suffix_init * config.suffix_length
    built = [split_at_suffix(tokenizer, i, t, init, config.system) for i, t in pairs]
    slots = [s for s, _ in built]
    ids = torch.tensor(built[0][1], device=model.device)
    if any(m != built[0][1] for _, m in built):
        raise ConfigError(
            "the starting suffix tokenizes differently after different instructions",
            where="suffix_init",
            fix="start the suffix with a space (the default ' x')",
        )
    objective = SuffixObjective(
        model, slots, batch_size=config.candidate_batch_size, prefix_cache=config.prefix_cache
    )
    if banned is None:
        vocab_size = adapt(model).vocab_size
        banned = torch.zeros(vocab_size, dtype=torch.bool)
        if not config.allow_non_ascii:
            banned = disallowed_tokens(tokenizer, vocab_size)
    generator = torch.Generator().manual_seed(config.seed)

    def _text(suffix_ids: torch.Tensor) -> str:
        return _suffix_text(tokenizer, slots[0], suffix_ids.tolist())

    best_loss = initial = float(objective.losses(ids[None])[0])
    best_ids = ids
    losses: list[float] = []
    stop = "budget"
    step = 0
    with progress_bar(config.num_steps, "gcg", progress) as bar:
        while step < config.num_steps:
            if config.early_stop and best_loss <= config.stop_loss:
                stop = "loss"
                break
            due = config.early_stop and step % config.check_every == 0
            if due and check is not None and check(_text(best_ids)):
                stop = "judge"
                break
            step += 1
            bar.advance()
            grad = objective.gradient(ids)
            candidates = _first_occurrences(_sample(ids, grad, banned, config, generator))
            candidates = candidates[(candidates != ids.cpu()).any(dim=1)]
            if config.filter_retokenized:
                for slot in slots:
                    candidates = candidates[
                        retokenizes(tokenizer, slot.before, candidates, slot.after)
                    ]
            candidates = candidates[: config.search_width]
            if len(candidates) == 0:
                losses.append(losses[-1] if losses else initial)
                continue
            scores = objective.losses(candidates.to(model.device))
            index = int(scores.argmin())
            ids = candidates[index].to(model.device)
            losses.append(float(scores[index]))
            if losses[-1] < best_loss:
                best_loss, best_ids = losses[-1], ids
    return GCGResult(
        suffix=_text(best_ids),
        ids=best_ids.tolist(),
        loss=best_loss,
        initial_loss=initial,
        losses=losses,
        steps=step,
        forward_passes=objective.forward_passes,
        seconds=time.perf_counter() - start,
        stop=stop,
        batch_size=objective.batch_size,
    )


# -- the attack -----------------------------------------------------------------------------


@dataclass
class _Checks:
    """Judged greedy answers during the search, and what they cost."""

    forward_passes: int = 0
    seen: dict[str, bool] = field(default_factory=dict)


@register
class GCGAttack(Attack):
    name = "gcg"
    goal = (
        "Append an adversarial suffix, optimised by token gradients, that makes the answer comply."
    )
    threat_model = ThreatModel.WHITE_BOX
    config_class = GCGConfig
    config: GCGConfig

    def __init__(self, config: AttackConfig | None = None) -> None:
        super().__init__(config)
        self._universal: GCGResult | None = None
        self._banned: tuple[object, torch.Tensor] | None = None

    def _banned_tokens(self, target: Target) -> torch.Tensor | None:
        """The tokens the suffix may not use, worked out once per tokenizer."""
        import torch

        from redblue.models import adapt

        if self._banned is None or self._banned[0] is not target.tokenizer:
            vocab_size = adapt(target.model).vocab_size
            banned = torch.zeros(vocab_size, dtype=torch.bool)
            if not self.config.allow_non_ascii:
                banned = disallowed_tokens(target.tokenizer, vocab_size)
            self._banned = (target.tokenizer, banned)
        return self._banned[1]

    @property
    def chunk_size(self) -> int:
        return self.config.batch_size if self.config.universal else 1

    def _target_text(self, prompt: Prompt) -> str:
        return prompt.target if self.config.use_targets and prompt.target else self.config.target

    def _checker(
        self, target: Target, prompts: Sequence[Prompt], checks: _Checks
    ) -> Callable[[str], bool]:
        """``check(suffix)``: every prompt's greedy answer with the suffix is judged a success."""
        from redblue.evaluate import make_judge
        from redblue.models import generate

        judge = make_judge(self.config.judge, target.model)
        settings = self.generation_settings()

        def check(suffix: str) -> bool:
            if suffix not in checks.seen:
                answers = generate(
                    target.model,
                    target.tokenizer,
                    [p.instruction + suffix for p in prompts],
                    settings,
                    progress=False,
                )
                checks.forward_passes += sum(1 + a.n_tokens for a in answers)
                checks.seen[suffix] = all(
                    judge(p, a.text) for p, a in zip(prompts, answers, strict=True)
                )
            return checks.seen[suffix]

        return check

    def _optimise(self, target: Target, prompts: Sequence[Prompt], progress: bool) -> GCGResult:
        checks = _Checks()
        result = run_gcg(
            target.model,
            target.tokenizer,
            [(p.instruction, self._target_text(p)) for p in prompts],
            self.config,
            check=self._checker(target, prompts, checks),
            banned=self._banned_tokens(target),
            progress=progress,
        )
        return replace(result, forward_passes=result.forward_passes + checks.forward_passes)

    def setup(self, target: Target, prompts: PromptSet, workdir: Path | None) -> None:
        if not self.config.universal:
            return
        train = list(prompts)[: self.config.n_train]
        saved = workdir / "universal.json" if workdir is not None else None
        if saved is not None and saved.is_file():  # a resumed run keeps its suffix
            result = GCGResult(**json.loads(saved.read_text(encoding="utf-8")))
        else:
            result = self._optimise(target, train, target.progress)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(asdict(result)), encoding="utf-8")
        self._universal = result
        self.extra.update(
            universal_suffix=result.suffix,
            universal_loss=result.loss,
            universal_steps=result.steps,
            universal_stop=result.stop,
            universal_forward_passes=result.forward_passes,
            universal_seconds=result.seconds,
            n_train=len(train),
        )

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        if self.config.universal:
            if self._universal is None:  # no setup: optimise on the first prompts given
                self.setup(target, prompts, None)
            assert self._universal is not None
            result = self._universal
            attempts = generate_attempts(
                self,
                target,
                list(prompts),
                [p.instruction + result.suffix for p in prompts],
                variant="universal",
            )
            extra = {"suffix": result.suffix, "loss": result.loss, "universal": True}
            return [replace(a, extra=extra) for a in attempts]
        attempts = []
        for prompt in prompts:
            result = self._optimise(target, [prompt], False)
            (attempt,) = generate_attempts(
                self, target, [prompt], [prompt.instruction + result.suffix]
            )
            attempts.append(
                replace(
                    attempt,
                    cost=attempt.cost + result.cost,
                    extra={
                        "suffix": result.suffix,
                        "loss": result.loss,
                        "initial_loss": result.initial_loss,
                        "steps": result.steps,
                        "stop": result.stop,
                        "batch_size": result.batch_size,
                    },
                )
            )
        return attempts

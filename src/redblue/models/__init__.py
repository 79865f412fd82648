"""The model layer: load any HF causal LM and see it through its architecture row.

``load`` picks files, dtype and device; ``adapt`` names a model's parts from the
:data:`ARCH_TABLE`; ``hook_residual`` / ``record_residual`` reach the residual
stream before and after every block; ``encode_batch`` renders chats with their
post-instruction positions; ``generate`` answers in batches.
"""

from redblue.models.adapter import ModelAdapter, adapt
from redblue.models.arch import ARCH_TABLE, ArchSpec, arch_spec
from redblue.models.chat import (
    ChatBatch,
    EncodedChat,
    encode_batch,
    encode_chat,
    has_chat_template,
    post_instruction_positions,
    post_instruction_tokens,
    render_chat,
)
from redblue.models.generate import Completion, GenerationSettings, generate
from redblue.models.hooks import Hooks, hook_residual, record_residual
from redblue.models.info import ModelInfo, describe
from redblue.models.load import EMBEDDED, ModelSource, export, load, resolve, trainable

__all__ = [
    "ARCH_TABLE",
    "EMBEDDED",
    "ArchSpec",
    "ChatBatch",
    "Completion",
    "EncodedChat",
    "GenerationSettings",
    "Hooks",
    "ModelAdapter",
    "ModelInfo",
    "ModelSource",
    "adapt",
    "arch_spec",
    "describe",
    "encode_batch",
    "encode_chat",
    "export",
    "generate",
    "has_chat_template",
    "hook_residual",
    "load",
    "post_instruction_positions",
    "post_instruction_tokens",
    "record_residual",
    "render_chat",
    "resolve",
    "trainable",
]

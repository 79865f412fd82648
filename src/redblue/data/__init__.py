"""Prompt sets: the values every stage reads, and loaders for the files users have."""

from __future__ import annotations

from redblue.data.prompts import Prompt, PromptSet, describe, instructions_of, train_val
from redblue.data.sources import SUPPORTED_FORMATS, detect_format, load_prompts

__all__ = [
    "SUPPORTED_FORMATS",
    "Prompt",
    "PromptSet",
    "describe",
    "detect_format",
    "instructions_of",
    "load_prompts",
    "train_val",
]

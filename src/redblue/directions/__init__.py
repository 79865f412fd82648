"""Refusal directions: extract candidates, score refusal, select one.

``extract_direction`` builds a :class:`Direction` holding a unit vector for every
(position, layer) from harmful and harmless prompts (difference in means by
default; PCA of paired differences or a logistic probe on request);
``select_direction`` scores each candidate by what ablating and adding it does
(Arditi et al. 2024) and chooses one; ``refusal_score`` is the logit measure
behind it.
"""

from redblue.directions.aggregators import AGGREGATORS, Aggregator, mean_diff, pca_diff, probe
from redblue.directions.direction import Direction, Provenance
from redblue.directions.extract import ExtractConfig, extract_direction
from redblue.directions.score import (
    REFUSAL_PHRASES,
    RefusalTokens,
    find_refusal_tokens,
    is_refusal,
    kl_divergence,
    last_logits,
    refusal_log_odds,
    refusal_score,
)
from redblue.directions.select import Candidate, SelectConfig, Selection, select_direction

__all__ = [
    "AGGREGATORS",
    "REFUSAL_PHRASES",
    "Aggregator",
    "Candidate",
    "Direction",
    "ExtractConfig",
    "Provenance",
    "RefusalTokens",
    "SelectConfig",
    "Selection",
    "extract_direction",
    "find_refusal_tokens",
    "is_refusal",
    "kl_divergence",
    "last_logits",
    "mean_diff",
    "pca_diff",
    "probe",
    "refusal_log_odds",
    "refusal_score",
    "select_direction",
]

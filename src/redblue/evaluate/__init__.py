"""Judging answers and putting intervals on rates.

:mod:`.judges` decides whether an answer complied with a request (the organism's
ground truth, or refusal phrases for any model); :mod:`.stats` gives intervals.
"""

from redblue.evaluate.judges import (
    JUDGES,
    ClassifierJudge,
    Judge,
    JudgeVerdict,
    LMJudge,
    OrganismJudge,
    RefusalPhraseJudge,
    RefusalScoreJudge,
    make_judge,
)
from redblue.evaluate.stats import Rate, wilson_interval

__all__ = [
    "JUDGES",
    "ClassifierJudge",
    "Judge",
    "JudgeVerdict",
    "LMJudge",
    "OrganismJudge",
    "Rate",
    "RefusalPhraseJudge",
    "RefusalScoreJudge",
    "make_judge",
    "wilson_interval",
]

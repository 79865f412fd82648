"""The guard server: a detector and a policy in front of a model, OpenAI-compatible.

``create_app(model, tokenizer, detector, GuardConfig(policy="flag"))`` builds the
FastAPI app; :func:`serve` runs it. Policies: ``flag`` (answer, add the score),
``block`` (refuse when the detector fires), ``steer`` (add the refusal direction
when it fires: conditional activation steering, Lee et al. 2024), ``none`` (no
guard). Activation detectors are scored from the activations of the pass that
serves the request (:mod:`redblue.guard.single_pass`).
"""

from redblue.guard.app import LOGGER, create_app, serve
from redblue.guard.config import TOKEN_ENV, GuardConfig, Policy
from redblue.guard.engine import Answer, Decision, Guard, Job, RequestError
from redblue.guard.single_pass import Captured, capture_prefill, reads_activations

__all__ = [
    "LOGGER",
    "TOKEN_ENV",
    "Answer",
    "Captured",
    "Decision",
    "Guard",
    "GuardConfig",
    "Job",
    "Policy",
    "RequestError",
    "capture_prefill",
    "create_app",
    "reads_activations",
    "serve",
]

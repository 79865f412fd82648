"""Abliteration by search: orthogonalize the refusal direction out of the weights, with a
per-layer strength chosen by a multi-objective Optuna search (fewer refusals, lower KL).

As in heretic, a trial is a direction and a weight profile per writer kind (attention
out, MLP out); the profile of a kind is a tent over the layers::

    weight(l) = max_weight + (|l - max_weight_position| / min_weight_distance) * (min_weight - max_weight)

for ``|l - max_weight_position| <= min_weight_distance``, no edit beyond. The direction
is the difference in means (``redblue.directions``) at a fractional ``direction_index``:
between two layers, the normalised interpolation of their directions. The writer of
block ``l`` then loses ``weight(l)`` times its output's component along the direction
(:func:`redblue.interventions.orthogonalize_writers`).

Each trial is scored on search prompts kept apart from the direction's prompts:
``refusals``, harmful prompts whose answer the judge does not count as complied, and
``kl``, ``KL(original || edited)`` of the first answer token on harmless prompts. Trials
run as hooks (:func:`~redblue.interventions.ablate_writers`), so the weights are never
touched during the search. The Pareto front is saved, one point chosen by a rule, and
exported as plain HF weights.

The workdir holds ``direction.*``, ``study.journal`` (Optuna's JournalStorage: a rerun
continues the study, and a larger ``n_trials`` extends it), ``trials.csv``,
``pareto.{json,csv,png}``, ``chosen.json`` and ``model/`` (the export).

The attack owns ``Target.model`` only while :meth:`AbliterateAttack.attack_batch` runs:
it edits the weights in place, answers, and restores the original tensors bit for bit.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from redblue.attacks.base import (
    Attack,
    AttackConfig,
    Attempt,
    Target,
    ThreatModel,
    generate_attempts,
    register,
)
from redblue.errors import ConfigError
from redblue.interventions import Projection, ablate_writers, orthogonalize_writers
from redblue.progress import progress_bar

if TYPE_CHECKING:
    import optuna
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet
    from redblue.directions import Direction
    from redblue.evaluate import Judge
    from redblue.models import GenerationSettings

#: The writer kinds with a profile each, and the prefix of their writer names.
KINDS = {"attn": "attn_out", "mlp": "mlp_out"}
Range = tuple[float, float]


# -- the edit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Edit strength over the layers: ``max_weight`` at ``max_weight_position``, falling
    linearly to ``min_weight`` at ``min_weight_distance`` layers away, nothing beyond."""

    max_weight: float
    max_weight_position: float
    min_weight: float
    min_weight_distance: float

    def weight(self, layer: int) -> float:
        distance = abs(layer - self.max_weight_position)
        if distance > self.min_weight_distance:
            return 0.0
        share = distance / self.min_weight_distance if self.min_weight_distance > 0 else 0.0
        return self.max_weight + share * (self.min_weight - self.max_weight)


@dataclass(frozen=True)
class Abliteration:
    """One trial's edit: a fractional direction index and a profile per writer kind."""

    direction_index: float
    attn: Profile
    mlp: Profile

    def edits(self, direction: Direction, n_layers: int) -> dict[str, Projection]:
        """The weighted projection of every writer with a non-zero weight."""
        vector = interpolate(direction, self.direction_index)
        out = {}
        for kind, prefix in KINDS.items():
            profile: Profile = getattr(self, kind)
            for layer in range(n_layers):
                weight = profile.weight(layer)
                if weight != 0:
                    out[f"{prefix}.{layer}"] = Projection(vector, weight)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Abliteration:
        """Rebuild the edit of an Optuna trial from its parameters (``min_weight`` is sampled
        as a fraction of ``max_weight``)."""

        def profile(kind: str) -> Profile:
            top = float(params[f"{kind}.max_weight"])
            return Profile(
                max_weight=top,
                max_weight_position=float(params[f"{kind}.max_weight_position"]),
                min_weight=float(params[f"{kind}.min_weight"]) * top,
                min_weight_distance=float(params[f"{kind}.min_weight_distance"]),
            )

        return cls(float(params["direction_index"]), profile("attn"), profile("mlp"))


def usable_layers(direction: Direction, position: int = -1) -> list[int]:
    """The direction's layers that are not degenerate at ``position``."""
    p = direction.positions.index(position)
    return [layer for i, layer in enumerate(direction.layers) if float(direction.norms[p, i]) > 0]


def interpolate(direction: Direction, index: float, position: int = -1) -> torch.Tensor:
    """The unit direction at a fractional layer ``index``: the normalised linear interpolation
    of the two neighbouring layers' directions, ``[d_model]`` float64."""
    import torch

    layers = direction.layers
    index = min(max(index, layers[0]), layers[-1])
    lo = max(layer for layer in layers if layer <= index)
    hi = min(layer for layer in layers if layer >= index)
    a = direction.at(lo, position).to(torch.float64)
    b = direction.at(hi, position).to(torch.float64)
    share = 0.0 if hi == lo else (index - lo) / (hi - lo)
    vector = torch.lerp(a, b, share)
    norm = vector.norm()
    if norm == 0:
        raise ValueError(f"the direction is degenerate at layer index {index}")
    return vector / norm


# -- the front --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """A finished trial: its number, its objectives and its edit."""

    trial: int
    refusals: int
    n_harmful: int
    kl: float
    abliteration: Abliteration

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "refusals": self.refusals,
            "n_harmful": self.n_harmful,
            "kl": self.kl,
            "abliteration": self.abliteration.to_dict(),
        }


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is no worse than ``b`` everywhere and better somewhere (minimising)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_front(objectives: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated rows (minimising every column; ties all kept), in order."""
    return [
        i
        for i, a in enumerate(objectives)
        if not any(dominates(b, a) for j, b in enumerate(objectives) if j != i)
    ]


def choose(
    front: Sequence[Point],
    rule: Literal["fewest_refusals", "lowest_kl"],
    *,
    max_kl: float,
    max_refusal_rate: float,
) -> tuple[Point, bool]:
    """The point ``rule`` picks from ``front``, and whether it met its bound.

    ``fewest_refusals``: the fewest refusals with ``kl <= max_kl`` (the lowest KL when no
    point is within the bound). ``lowest_kl``: the lowest KL with a refusal rate at most
    ``max_refusal_rate`` (the fewest refusals when none is).
    """
    if not front:
        raise ValueError("the front is empty")
    by_refusals = sorted(front, key=lambda p: (p.refusals, p.kl))
    by_kl = sorted(front, key=lambda p: (p.kl, p.refusals))
    if rule == "fewest_refusals":
        within = [p for p in by_refusals if p.kl <= max_kl]
        return (within[0], True) if within else (by_kl[0], False)
    within = [p for p in by_kl if p.refusals <= max_refusal_rate * p.n_harmful]
    return (within[0], True) if within else (by_refusals[0], False)


def save_front(points: Sequence[Point], front: Sequence[Point], folder: Path) -> None:
    """``trials.csv`` (every point), ``pareto.json``, ``pareto.csv`` and ``pareto.png``."""
    from redblue.io import write_json

    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("trials.csv", points), ("pareto.csv", front)):
        tmp = folder / f".{name}.partial"
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["trial", "refusals", "n_harmful", "kl", "direction_index"])
            for p in rows:
                writer.writerow(
                    [
                        p.trial,
                        p.refusals,
                        p.n_harmful,
                        f"{p.kl:.6g}",
                        f"{p.abliteration.direction_index:.4f}",
                    ]
                )
        tmp.replace(folder / name)
    write_json(folder / "pareto.json", [p.to_dict() for p in front])
    plot_front(points, front, folder / "pareto.png")


def plot_front(points: Sequence[Point], front: Sequence[Point], path: Path) -> Path:
    """Refusals against KL: every trial in grey, the front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    ax.scatter([p.kl for p in points], [p.refusals for p in points], s=12, c="0.7", label="trials")
    line = sorted(front, key=lambda p: p.kl)
    ax.plot([p.kl for p in line], [p.refusals for p in line], "o-", c="C3", label="Pareto front")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel("KL divergence on harmless prompts (nats)")
    ax.set_ylabel("refusals on harmful prompts")
    ax.legend(fontsize=8)
    tmp = path.with_name(path.name + ".partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# -- the search -------------------------------------------------------------------------------


class AbliterateConfig(AttackConfig):
    n_trials: int = Field(
        40, ge=1, description="Finished trials the study ends with (a rerun extends it)."
    )
    n_startup_trials: int = Field(
        12, ge=0, description="Random trials before the sampler models the front."
    )
    sampler: Literal["tpe", "nsga2"] = Field(
        "tpe", description="Optuna sampler: multivariate TPE or NSGA-II."
    )
    harmful: str | None = Field(
        None, description="Harmful prompts for the direction and the search (file, folder or hub "
        "dataset); the organism's harmful_train split by default.",
    )  # fmt: skip
    harmless: str | None = Field(
        None, description="Harmless prompts for the direction and the search; the organism's "
        "harmless_train split by default.",
    )  # fmt: skip
    n_direction: int = Field(
        128, ge=2, description="Prompts of each kind for the difference in means."
    )
    n_search: int = Field(
        32,
        ge=1,
        description="Prompts of each kind scoring each trial (apart from the direction's).",
    )
    search_max_new_tokens: int = Field(
        32, ge=1, description="Answer length when judging answers in a trial."
    )
    judge: str = Field(
        "auto", description="Judge counting refusals in trials (see redblue.evaluate.make_judge)."
    )
    direction_range: Range = Field(
        (0.0, 1.0), description="Direction index range, as fractions of the last layer."
    )
    max_weight_range: Range = Field((0.8, 1.5), description="Range of a profile's largest weight.")
    position_range: Range = Field(
        (0.0, 1.0), description="Range of the profile's peak, as fractions of the last layer."
    )
    distance_range: Range = Field(
        (0.0, 1.0), description="Range of the fall-off distance, as fractions of the last layer."
    )
    choose: Literal["fewest_refusals", "lowest_kl"] = Field(
        "fewest_refusals", description="How to pick a point of the front (bounded by max_kl / max_refusal_rate).",
    )  # fmt: skip
    max_kl: float = Field(0.2, gt=0, description="KL bound of the fewest_refusals rule (nats).")
    max_refusal_rate: float = Field(
        0.1, ge=0, le=1, description="Refusal-rate bound of the lowest_kl rule."
    )
    trial: int | None = Field(None, description="Take this trial instead of the rule's choice.")
    export: bool = Field(True, description="Write the chosen point's weights to WORKDIR/model.")

    @field_validator("direction_range", "max_weight_range", "position_range", "distance_range")
    @classmethod
    def _ordered(cls, value: Range) -> Range:
        if value[0] > value[1]:
            raise ValueError(f"a range is (low, high) with low <= high, got {value}")
        return value


@dataclass
class SearchResult:
    """Every finished trial, the front, and how many trials this call ran."""

    points: list[Point]
    front: list[Point]
    n_run: int


def search_space(config: AbliterateConfig, direction: Direction, n_layers: int) -> dict[str, Range]:
    """Optuna parameter name to (low, high), scaled to the model's depth."""
    last = n_layers - 1
    layers = usable_layers(direction)
    if not layers:
        raise ConfigError("the direction is degenerate at every layer", where="direction")
    lo = max(config.direction_range[0] * last, layers[0])
    hi = min(max(config.direction_range[1] * last, lo), layers[-1])
    space = {"direction_index": (lo, max(lo, hi))}
    for kind in KINDS:
        space[f"{kind}.max_weight"] = config.max_weight_range
        space[f"{kind}.max_weight_position"] = (
            config.position_range[0] * last,
            config.position_range[1] * last,
        )
        space[f"{kind}.min_weight"] = (0.0, 1.0)
        low, high = config.distance_range
        space[f"{kind}.min_weight_distance"] = (max(low * last, 0.5), max(high * last, 0.5))
    return space


def score_edit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    edits: dict[str, Projection],
    harmful: PromptSet,
    harmless: PromptSet,
    base_logits: torch.Tensor,
    judge: Judge,
    settings: GenerationSettings,
) -> tuple[int, float]:
    """``(refusals, kl)`` of the model with ``edits`` applied as hooks (weights untouched)."""
    from redblue.directions import kl_divergence, last_logits
    from redblue.models import generate

    with ablate_writers(model, edits):
        answers = generate(model, tokenizer, harmful.instructions, settings, progress=False)
        logits = last_logits(
            model, tokenizer, harmless, system=settings.system, batch_size=settings.batch_size
        )
    refusals = sum(not judge(p, a.text) for p, a in zip(harmful, answers, strict=True))
    return refusals, kl_divergence(base_logits, logits)


def _sampler(config: AbliterateConfig, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    with warnings.catch_warnings():  # multivariate TPE is "experimental" (and heretic's default)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=config.n_startup_trials,
            multivariate=True,
            n_ei_candidates=128,
            seed=seed,
        )


def _points(study: optuna.Study) -> list[Point]:
    from optuna.trial import TrialState

    return [
        Point(
            trial=t.number,
            refusals=int(t.user_attrs["refusals"]),
            n_harmful=int(t.user_attrs["n_harmful"]),
            kl=float(t.user_attrs["kl"]),
            abliteration=Abliteration.from_params(t.params),
        )
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]


def run_search(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    direction: Direction,
    harmful: PromptSet,
    harmless: PromptSet,
    judge: Judge,
    config: AbliterateConfig,
    *,
    storage: Path | None = None,
    spec: dict[str, Any] | None = None,
    progress: bool = False,
) -> SearchResult:
    """Run (or continue) the study until it holds ``config.n_trials`` finished trials.

    With ``storage``, the study lives in that JournalStorage file; ``spec`` is kept with
    it and must match on resume. The sampler's seed is ``config.seed`` plus the trials
    already run, so a resumed study does not repeat its random start.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from redblue.directions import last_logits
    from redblue.models import adapt

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = _settings(config)
    n_layers = adapt(model).n_layers
    space = search_space(config, direction, n_layers)
    backend = None
    if storage is not None:
        storage.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalStorage(JournalFileBackend(str(storage)))
    study = optuna.create_study(
        storage=backend,
        study_name="abliterate",
        directions=["minimize", "minimize"],
        load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(),  # replaced below, once the trial count is known
    )
    # as stored: JSON values (tuples become lists)
    spec = json.loads(json.dumps(dict(spec or {}) | {"space": space}))
    old = study.user_attrs.get("spec")
    if old is None:
        study.set_user_attr("spec", spec)
    elif old != spec:
        changed = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        raise ConfigError(
            f"{storage} holds a study with a different {', '.join(changed)}",
            where=str(storage),
            fix="use another workdir, or delete the study file to start over",
        )
    study.sampler = _sampler(config, config.seed + len(study.trials))
    base_logits = last_logits(
        model, tokenizer, harmless, system=config.system, batch_size=config.batch_size
    )

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {name: trial.suggest_float(name, lo, hi) for name, (lo, hi) in space.items()}
        edits = Abliteration.from_params(params).edits(direction, n_layers)
        refusals, kl = score_edit(
            model, tokenizer, edits, harmful, harmless, base_logits, judge, settings
        )
        trial.set_user_attr("refusals", refusals)
        trial.set_user_attr("n_harmful", len(harmful))
        trial.set_user_attr("kl", kl)
        return float(refusals), kl

    done = len(_points(study))
    todo = max(0, config.n_trials - done)
    with progress_bar(todo, "abliterate search", progress) as bar:
        study.optimize(objective, n_trials=todo, callbacks=[lambda study, trial: bar.advance()])
    points = _points(study)
    front_index = pareto_front([(p.refusals, p.kl) for p in points])
    front = sorted((points[i] for i in front_index), key=lambda p: (p.refusals, p.kl))
    return SearchResult(points, front, todo)


def _settings(config: AbliterateConfig) -> GenerationSettings:
    from redblue.models import GenerationSettings

    return GenerationSettings(
        max_new_tokens=config.search_max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
        system=config.system,
    )


# -- the attack -------------------------------------------------------------------------------


def search_prompts(model: PreTrainedModel, config: AbliterateConfig) -> tuple[PromptSet, PromptSet]:
    """The harmful and harmless prompts the direction and the search read."""
    from redblue.data import load_prompts
    from redblue.evaluate.judges import is_organism

    if config.harmful is not None and config.harmless is not None:
        return load_prompts(config.harmful), load_prompts(config.harmless)
    if is_organism(model):
        from redblue.organism.evaluate import load_splits

        splits = load_splits(str(model.name_or_path))
        harmful = load_prompts(config.harmful) if config.harmful else splits["harmful_train"]
        harmless = load_prompts(config.harmless) if config.harmless else splits["harmless_train"]
        return harmful, harmless
    raise ConfigError(
        "abliterate needs harmful and harmless prompts for its direction and search",
        where="abliterate config",
        fix="set harmful= and harmless= (prompt files, folders or hub datasets)",
    )


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


@register
class AbliterateAttack(Attack):
    name = "abliterate"
    goal = "Orthogonalize the refusal direction out of the weights, strength per layer found by a Pareto search."
    threat_model = ThreatModel.WEIGHTS
    config_class = AbliterateConfig
    config: AbliterateConfig

    def __init__(self, config: AttackConfig | None = None) -> None:
        super().__init__(config)
        self.direction: Direction | None = None
        self.result: SearchResult | None = None
        self.chosen: Point | None = None
        self._n_layers = 0

    def setup(self, target: Target, prompts: PromptSet, workdir: Path | None) -> None:
        """Extract the direction (or read it back), run the search, choose and export a point.

        ``prompts`` (the ones attacked) are not read: the search uses its own prompts.
        """
        from redblue.activations import model_fingerprint
        from redblue.data import train_val
        from redblue.evaluate import make_judge
        from redblue.models import adapt, export

        config = self.config
        model, tokenizer = target.model, target.tokenizer
        self._n_layers = adapt(model).n_layers
        harmful, harmless = search_prompts(model, config)
        train_h, search_h = train_val(harmful, config.n_direction, config.n_search, config.seed)
        train_b, search_b = train_val(harmless, config.n_direction, config.n_search, config.seed)
        self.direction = direction = self._direction(target, train_h, train_b, workdir)
        judge = make_judge(config.judge, model)
        spec = {
            "model": model_fingerprint(model),
            "direction": _digest(direction.vectors),
            "search_prompts": [search_h.content_hash, search_b.content_hash],
            "judge": judge.name,
            "config": config.model_dump(
                mode="json",
                exclude={"n_trials", "choose", "max_kl", "max_refusal_rate", "trial", "export"},
            ),
        }
        self.result = result = run_search(
            model, tokenizer, direction, search_h, search_b, judge, config,
            storage=workdir / "study.journal" if workdir is not None else None,
            spec=spec, progress=target.progress,
        )  # fmt: skip
        if config.trial is not None:
            matches = [p for p in result.points if p.trial == config.trial]
            if not matches:
                raise ConfigError(
                    f"no finished trial {config.trial}",
                    where="trial",
                    fix=f"choose one of {[p.trial for p in result.points]}",
                )
            chosen, met = matches[0], True
        else:
            chosen, met = choose(
                result.front,
                config.choose,
                max_kl=config.max_kl,
                max_refusal_rate=config.max_refusal_rate,
            )
        self.chosen = chosen
        self.extra = {
            "trials": len(result.points),
            "trials_run": result.n_run,
            "front": [p.to_dict() for p in result.front],
            "chosen": chosen.to_dict(),
            "bound_met": met,
            "direction_layers": usable_layers(direction),
        }
        if workdir is None:
            return
        from redblue.io import write_json

        save_front(result.points, result.front, workdir)
        record = {"trial": chosen.trial, "spec": spec} | chosen.to_dict()
        chosen_path, out = workdir / "chosen.json", workdir / "model"
        if config.export:
            previous = json.loads(chosen_path.read_text()) if chosen_path.is_file() else None
            if out.exists() and previous != record:
                shutil.rmtree(out)
            if not out.exists():
                with orthogonalize_writers(model, self.edits()):
                    export(model, tokenizer, out)
            self.extra["export"] = str(out)
        write_json(chosen_path, record)

    def _direction(
        self, target: Target, harmful: PromptSet, harmless: PromptSet, workdir: Path | None
    ) -> Direction:
        from redblue.activations import model_fingerprint
        from redblue.directions import Direction, ExtractConfig, extract_direction

        path = workdir / "direction" if workdir is not None else None
        if path is not None and path.with_suffix(".json").is_file():
            direction = Direction.load(path)
            if direction.provenance.model_hash == model_fingerprint(target.model):
                return direction
        config = ExtractConfig(
            positions="last", system=self.config.system, batch_size=self.config.batch_size,
            progress=target.progress,
        )  # fmt: skip
        direction = extract_direction(target.model, target.tokenizer, harmful, harmless, config)
        if path is not None:
            direction.save(path)
        return direction

    def edits(self) -> dict[str, Projection]:
        """The chosen point's per-writer projections."""
        if self.direction is None or self.chosen is None:
            raise RuntimeError("abliterate: call setup() before attacking")
        return self.chosen.abliteration.edits(self.direction, self._n_layers)

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        assert self.chosen is not None
        with orthogonalize_writers(target.model, self.edits()):
            return generate_attempts(
                self,
                target,
                list(prompts),
                prompts.instructions,
                variant=f"trial={self.chosen.trial}",
            )


__all__ = [
    "AbliterateAttack",
    "AbliterateConfig",
    "Abliteration",
    "Point",
    "Profile",
    "SearchResult",
    "choose",
    "dominates",
    "interpolate",
    "pareto_front",
    "run_search",
    "save_front",
    "score_edit",
    "search_space",
]

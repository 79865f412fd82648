"""The report's figures: matplotlib drawings returned as ``data:image/png;base64`` URIs.

Each function takes plain values (metrics, artifact dictionaries) and returns one
image, so a page embeds it with no file beside it and no network. Figures are
built as :class:`matplotlib.figure.Figure` objects, never through pyplot, so no
global backend or figure registry is touched.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from redblue.evaluate.store import Metric
    from redblue.report.data import Curve

__all__ = ["attack_bars", "pareto_front", "roc_curves", "selection_curves", "sweep_curves"]

#: Colours in drawing order (colour-blind safe: Okabe and Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
DPI = 144


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color(MUTED)
        ax.tick_params(colors=INK, labelsize=8)
    return fig, axes


def _uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _errors(metrics: Sequence[Metric]) -> list[list[float]]:
    """Distances from each value down and up to its interval's ends (zero without one)."""
    low = [m.value - m.ci[0] if m.ci is not None else 0.0 for m in metrics]
    high = [m.ci[1] - m.value if m.ci is not None else 0.0 for m in metrics]
    return [[max(0.0, x) for x in low], [max(0.0, x) for x in high]]


def attack_bars(labels: Sequence[str], metrics: Sequence[Metric], title: str) -> str:
    """Horizontal bars of rates (one per label, top to bottom) with their 95% intervals."""
    fig, (ax,) = _figure(7.5, 0.9 + 0.42 * len(labels))
    ys = list(range(len(labels)))[::-1]
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(labels))]
    ax.barh(ys, [m.value for m in metrics], height=0.62, color=colours, alpha=0.85)
    ax.errorbar(
        [m.value for m in metrics],
        ys,
        xerr=_errors(metrics),
        fmt="none",
        ecolor=INK,
        elinewidth=1.2,
        capsize=4,
    )
    for y, m in zip(ys, metrics, strict=True):
        right = m.ci[1] if m.ci is not None else m.value
        ax.text(min(right + 0.015, 0.9), y, f"{m.value:.2f}", va="center", fontsize=8, color=INK)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{title} (95% Wilson interval)", fontsize=8, color=INK)
    ax.grid(False, axis="y")
    return _uri(fig)


def sweep_curves(key: str, series: Sequence[tuple[str, Sequence[tuple[float, Metric]]]]) -> str:
    """Attack success against a swept number (``k`` of a prefill, say), one line per run,
    each with its interval as a band."""
    fig, (ax,) = _figure(7.5, 3.2)
    for i, (label, points) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        xs = [x for x, _ in points]
        ax.plot(
            xs, [m.value for _, m in points], marker="o", markersize=4, color=colour, label=label
        )
        if all(m.ci is not None for _, m in points):
            ax.fill_between(
                xs,
                [m.ci[0] for _, m in points if m.ci is not None],
                [m.ci[1] for _, m in points if m.ci is not None],
                color=colour,
                alpha=0.15,
                linewidth=0,
            )
    ax.set_ylim(0, 1)
    ax.set_xlabel(key, fontsize=9, color=INK)
    ax.set_ylabel("attack success rate", fontsize=9, color=INK)
    if all(float(x).is_integer() for _, points in series for x, _ in points):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, frameon=False)
    return _uri(fig)


def selection_curves(selection: dict[str, Any]) -> str:
    """Bypass, induce and KL per layer (one line per token position), the chosen candidate
    starred, the no-intervention baselines dashed, the filters shaded."""
    candidates = selection["candidates"]
    config = selection.get("config") or {}
    chosen = selection.get("chosen")
    n_layers = selection.get("n_layers")
    fig, axes = _figure(11.0, 3.3, ncols=3)
    panels = (
        (
            "bypass",
            "harmful refusal score, direction ablated",
            "lower is better",
            selection.get("baseline_harmful"),
        ),
        (
            "induce",
            "harmless refusal score, direction added",
            "higher is better",
            selection.get("baseline_harmless"),
        ),
        ("kl", "KL on harmless prompts, direction ablated", "lower is better", None),
    )
    positions = sorted({int(c["position"]) for c in candidates})
    for ax, (metric, title, hint, baseline) in zip(axes, panels, strict=True):
        for i, position in enumerate(positions):
            rows = sorted(
                (c for c in candidates if int(c["position"]) == position),
                key=lambda c: int(c["layer"]),
            )
            ax.plot(
                [int(c["layer"]) for c in rows],
                [float(c[metric]) for c in rows],
                marker=".",
                markersize=4,
                linewidth=1.3,
                color=PALETTE[i % len(PALETTE)],
                label=f"position {position}",
            )
        if isinstance(baseline, int | float) and math.isfinite(baseline):
            ax.axhline(baseline, color=MUTED, linestyle="--", linewidth=1, label="no intervention")
        if metric == "kl" and isinstance(config.get("kl_threshold"), int | float):
            ax.axhline(
                config["kl_threshold"],
                color="#c81e1e",
                linestyle=":",
                linewidth=1.2,
                label="KL threshold",
            )
        fraction = config.get("max_layer_fraction")
        if isinstance(n_layers, int) and isinstance(fraction, int | float) and fraction < 1:
            ax.axvspan(
                fraction * n_layers - 0.5,
                n_layers - 0.5,
                color=GRID,
                alpha=0.6,
                linewidth=0,
                label="late layers (filtered)",
            )
        if chosen is not None:
            ax.plot(
                [int(chosen["layer"])],
                [float(chosen[metric])],
                marker="*",
                markersize=14,
                color=INK,
                linestyle="none",
                label="chosen",
            )
        ax.set_title(f"{metric}: {title}\n({hint})", fontsize=9, color=INK)
        ax.set_xlabel("layer", fontsize=8, color=INK)
    axes[2].legend(fontsize=7, frameon=False)
    return _uri(fig)


def pareto_front(points: Sequence[dict[str, Any]]) -> str:
    """Refusals against KL for every abliteration trial; the non-dominated front joined
    (fewer refusals and less KL are both better), the chosen trial starred."""
    fig, (ax,) = _figure(7.5, 3.8)
    kls = [float(p["kl"]) for p in points]
    refusals = [float(p["refusals"]) for p in points]
    front = _front(kls, refusals)
    ax.scatter(kls, refusals, s=18, color=PALETTE[5], alpha=0.7, label="trial", linewidths=0)
    ax.step(
        [kls[i] for i in front],
        [refusals[i] for i in front],
        where="post",
        color=PALETTE[0],
        linewidth=1.5,
        label="Pareto front",
    )
    chosen = [i for i, p in enumerate(points) if p.get("chosen") is True]
    if chosen:
        ax.scatter(
            [kls[i] for i in chosen],
            [refusals[i] for i in chosen],
            s=160,
            marker="*",
            color=PALETTE[1],
            edgecolors=INK,
            linewidths=0.6,
            zorder=3,
            label="chosen",
        )
    ax.set_xlabel("KL divergence on harmless prompts (lower is better)", fontsize=9, color=INK)
    ax.set_ylabel("refusals (lower is better)", fontsize=9, color=INK)
    ax.legend(fontsize=8, frameon=False)
    return _uri(fig)


def _front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both (lower x and lower y), by x."""
    order = sorted(
        (i for i in range(len(xs)) if math.isfinite(xs[i]) and math.isfinite(ys[i])),
        key=lambda i: (xs[i], ys[i]),
    )
    front: list[int] = []
    best = math.inf
    for i in order:
        if ys[i] < best:
            front.append(i)
            best = ys[i]
    return front


def roc_curves(curves: Sequence[Curve]) -> str:
    """True against false positive rate, one line per detector, with chance as a diagonal."""
    fig, (ax,) = _figure(5.2, 4.6)
    ax.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="chance")
    for i, curve in enumerate(curves):
        ax.plot(
            curve.fpr,
            curve.tpr,
            color=PALETTE[i % len(PALETTE)],
            linewidth=1.6,
            label=f"{curve.name} (AUROC {curve.auroc:.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate", fontsize=9, color=INK)
    ax.set_ylabel("true positive rate", fontsize=9, color=INK)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return _uri(fig)

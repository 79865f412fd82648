"""The :class:`Direction` value: unit vectors per (position, layer) with their provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

FORMAT = "redblue.direction/1"


@dataclass(frozen=True)
class Provenance:
    """Where a direction came from: enough to tell two directions apart and to redo one."""

    model: str
    model_hash: str
    method: str
    harmful_hash: str
    harmless_hash: str
    n_harmful: int
    n_harmless: int
    #: ``"pre"``: the residual stream entering each block (``resid_pre``).
    where: str = "pre"
    system: str | None = None


@dataclass(frozen=True, eq=False)
class Direction:
    """Candidate directions for every (position, layer), and the one chosen.

    ``vectors`` is ``[n_positions, n_layers, d_model]`` float32, each row a unit
    vector (or all zeros where the two prompt sets did not differ: see
    ``skipped``); ``norms`` is ``[n_positions, n_layers]``, the length of the
    aggregate before normalising (for mean difference, ``|mean(harmful) -
    mean(harmless)|``), which :func:`redblue.interventions.add` uses as its
    unit of ``alpha``. ``positions`` are columns counted from the end of the
    prompt; ``layers`` are block indices (the vector is read entering that block).
    """

    vectors: torch.Tensor
    norms: torch.Tensor
    positions: list[int]
    layers: list[int]
    layer: int
    position: int
    provenance: Provenance
    chosen_by: str = "extract"
    skipped: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        shape = tuple(self.vectors.shape)
        if len(shape) != 3 or shape[:2] != (len(self.positions), len(self.layers)):
            raise ValueError(
                f"vectors must be [n_positions={len(self.positions)}, n_layers={len(self.layers)}, d_model], got {shape}"
            )
        if tuple(self.norms.shape) != shape[:2]:
            raise ValueError(f"norms must be {shape[:2]}, got {tuple(self.norms.shape)}")
        self.index(self.layer, self.position)

    def index(self, layer: int, position: int) -> tuple[int, int]:
        """``(position index, layer index)`` into ``vectors`` and ``norms``."""
        if position not in self.positions:
            raise ValueError(f"position {position} is not one of this direction's {self.positions}")
        if layer not in self.layers:
            raise ValueError(f"layer {layer} is not one of this direction's {self.layers}")
        return self.positions.index(position), self.layers.index(layer)

    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[-1])

    @property
    def vector(self) -> torch.Tensor:
        """The chosen unit vector, ``[d_model]``."""
        return self.at(self.layer, self.position)

    @property
    def scale(self) -> float:
        """The aggregate's length at the chosen (layer, position)."""
        p, layer = self.index(self.layer, self.position)
        return float(self.norms[p, layer])

    def at(self, layer: int, position: int) -> torch.Tensor:
        """The unit vector at ``layer`` and ``position``."""
        p, i = self.index(layer, position)
        return self.vectors[p, i]

    def choose(self, layer: int, position: int, *, chosen_by: str) -> Direction:
        """The same candidates with another choice."""
        p, i = self.index(layer, position)
        if float(self.norms[p, i]) == 0.0:
            raise ValueError(
                f"layer {layer} position {position} is degenerate (harmful and harmless did not differ)"
            )
        return replace(self, layer=layer, position=position, chosen_by=chosen_by)

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, JSON-ready."""
        return {
            "format": FORMAT,
            "layer": self.layer,
            "position": self.position,
            "positions": self.positions,
            "layers": self.layers,
            "d_model": self.d_model,
            "chosen_by": self.chosen_by,
            "skipped": [list(s) for s in self.skipped],
            "scale": self.scale,
            "provenance": asdict(self.provenance),
        }

    def to_dict(self) -> dict[str, Any]:
        return self.metadata()

    def __eq__(self, other: object) -> bool:
        import torch

        if not isinstance(other, Direction):
            return NotImplemented
        return (
            self.metadata() == other.metadata()
            and torch.equal(self.vectors, other.vectors)
            and torch.equal(self.norms, other.norms)
        )

    __hash__ = None  # type: ignore[assignment]

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.safetensors`` (the tensors) and ``PATH.json`` (the rest), atomically.

        ``path`` may end in ``.safetensors`` or have no suffix; returns the safetensors path.
        """
        from redblue.io import save_paired

        tensors = {"vectors": self.vectors, "norms": self.norms}
        return save_paired(path, tensors, self.metadata(), header={"format": FORMAT})

    @classmethod
    def load(cls, path: str | Path) -> Direction:
        """Read a direction written by :meth:`save`."""
        from redblue.io import load_paired

        tensors, meta = load_paired(
            path,
            what="direction",
            format=FORMAT,
            fix_missing="pass the .safetensors file written by `redblue direction extract` "
            "(its .json sits beside it)",
            fix_format=f"expected {FORMAT!r}; re-extract the direction with this version of redblue",
        )
        return cls(
            vectors=tensors["vectors"],
            norms=tensors["norms"],
            positions=[int(p) for p in meta["positions"]],
            layers=[int(x) for x in meta["layers"]],
            layer=int(meta["layer"]),
            position=int(meta["position"]),
            provenance=Provenance(**meta["provenance"]),
            chosen_by=meta["chosen_by"],
            skipped=[(int(a), int(b)) for a, b in meta["skipped"]],
        )

"""Prompts and prompt sets: immutable values with provenance.

A :class:`PromptSet` is what every stage downstream takes: direction
selection reads ``instructions``, attacks read ``targets``, run logs record
``content_hash``. Sets are frozen; every operation returns a new set.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

from redblue.errors import DataError

__all__ = ["Prompt", "PromptSet", "describe"]

_FRACTION_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Prompt:
    """One instruction, with an optional target (reference response) and category.

    ``meta`` keeps the source row's other columns as strings.
    """

    instruction: str
    id: str
    target: str | None = None
    category: str | None = None
    meta: dict[str, str] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping; :meth:`from_dict` reads it back."""
        return {
            "id": self.id,
            "instruction": self.instruction,
            "target": self.target,
            "category": self.category,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Prompt:
        """Build a prompt from a :meth:`to_dict` mapping (``target``, ``category``, ``meta`` optional)."""
        missing = [key for key in ("id", "instruction") if key not in record]
        if missing:
            raise DataError(
                f"prompt record lacks {', '.join(repr(k) for k in missing)}",
                fix="records need at least 'id' and 'instruction' keys",
            )
        meta = record.get("meta") or {}
        return cls(
            instruction=str(record["instruction"]),
            id=str(record["id"]),
            target=_optional_str(record.get("target")),
            category=_optional_str(record.get("category")),
            meta={str(k): str(v) for k, v in meta.items()},
        )


@dataclass(frozen=True)
class PromptSet:
    """An ordered, immutable collection of prompts.

    ``source`` is the file, folder or dataset it came from; ``columns`` the
    columns seen there and ``roles`` which column fed each prompt field
    (``{"instruction": "goal", "target": "target"}``), both empty when the set
    was built in code.
    """

    prompts: tuple[Prompt, ...]
    name: str = ""
    source: str = ""
    columns: tuple[str, ...] = ()
    roles: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompts, tuple):
            object.__setattr__(self, "prompts", tuple(self.prompts))
        if not isinstance(self.columns, tuple):
            object.__setattr__(self, "columns", tuple(self.columns))

    @classmethod
    def from_instructions(
        cls,
        instructions: Sequence[str],
        *,
        targets: Sequence[str | None] | None = None,
        categories: Sequence[str | None] | None = None,
        ids: Sequence[str] | None = None,
        name: str = "",
        source: str = "",
    ) -> PromptSet:
        """Build a set from parallel lists; ids default to ``"{name}-{i}"`` (``"prompt-{i}"``)."""
        n = len(instructions)
        for label, values in (("targets", targets), ("categories", categories), ("ids", ids)):
            if values is not None and len(values) != n:
                raise DataError(
                    f"{label} has {len(values)} items but instructions has {n}",
                    where=label,
                    fix=f"pass one entry of {label} per instruction",
                )
        stem = name or "prompt"
        prompts = tuple(
            Prompt(
                instruction=instruction,
                id=ids[i] if ids is not None else f"{stem}-{i}",
                target=targets[i] if targets is not None else None,
                category=categories[i] if categories is not None else None,
            )
            for i, instruction in enumerate(instructions)
        )
        return cls(prompts, name=name, source=source)

    # -- views -------------------------------------------------------------

    @property
    def instructions(self) -> list[str]:
        """The instructions, in order."""
        return [p.instruction for p in self.prompts]

    @property
    def targets(self) -> list[str | None]:
        """The targets, in order (``None`` where a prompt has none)."""
        return [p.target for p in self.prompts]

    @property
    def categories(self) -> list[str | None]:
        """The categories, in order (``None`` where a prompt has none)."""
        return [p.category for p in self.prompts]

    @property
    def ids(self) -> list[str]:
        """The prompt ids, in order."""
        return [p.id for p in self.prompts]

    @property
    def instruction_column(self) -> str | None:
        """The source column the instructions came from, if known."""
        return self.roles.get("instruction")

    @property
    def content_hash(self) -> str:
        """SHA-256 hex of (instruction, target, category) of every prompt, in order.

        Names, sources, ids and meta do not enter the hash: two sets with the
        same content in the same order hash equal.
        """
        content = [[p.instruction, p.target, p.category] for p in self.prompts]
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    @overload
    def __getitem__(self, index: int) -> Prompt: ...

    @overload
    def __getitem__(self, index: slice) -> PromptSet: ...

    def __getitem__(self, index: int | slice) -> Prompt | PromptSet:
        if isinstance(index, slice):
            return self._with(self.prompts[index])
        return self.prompts[index]

    def __add__(self, other: PromptSet) -> PromptSet:
        if not isinstance(other, PromptSet):
            return NotImplemented
        return self.concat(other)

    # -- operations ----------------------------------------------------------

    def dedupe(self) -> PromptSet:
        """Drop prompts whose instruction repeats an earlier one.

        Instructions compare after collapsing whitespace and casefolding; the
        first occurrence is kept.
        """
        seen: set[str] = set()
        kept: list[Prompt] = []
        for prompt in self.prompts:
            key = " ".join(prompt.instruction.split()).casefold()
            if key not in seen:
                seen.add(key)
                kept.append(prompt)
        return self._with(tuple(kept))

    def split(self, fractions: Sequence[float], seed: int = 0) -> tuple[PromptSet, ...]:
        """Shuffle with ``seed``, then cut into consecutive parts of the given fractions.

        Fractions must be non-negative and sum to 1; every prompt lands in
        exactly one part, and part sizes are rounded from cumulative fractions.
        """
        if not fractions or any(f < 0 for f in fractions):
            raise DataError(
                f"split fractions must be a non-empty list of non-negative numbers, got {list(fractions)}",
                where="fractions",
                fix="pass e.g. fractions=(0.8, 0.2)",
            )
        total = sum(fractions)
        if abs(total - 1.0) > _FRACTION_TOLERANCE:
            raise DataError(
                f"split fractions sum to {total:g}, not 1",
                where="fractions",
                fix="pass fractions that add up to 1, e.g. (0.8, 0.1, 0.1)",
            )
        order = list(range(len(self)))
        random.Random(seed).shuffle(order)
        parts: list[PromptSet] = []
        start, cumulative = 0, 0.0
        for i, fraction in enumerate(fractions):
            cumulative += fraction
            end = len(order) if i == len(fractions) - 1 else round(cumulative * len(order))
            end = max(start, min(end, len(order)))
            parts.append(self._with(tuple(self.prompts[j] for j in order[start:end])))
            start = end
        return tuple(parts)

    def sample(self, n: int, seed: int = 0) -> PromptSet:
        """``n`` prompts drawn without replacement with ``seed``, kept in their original order."""
        if not 0 <= n <= len(self):
            raise DataError(
                f"cannot sample {n} prompts from a set of {len(self)}",
                where="n",
                fix=f"ask for between 0 and {len(self)} prompts",
            )
        chosen = sorted(random.Random(seed).sample(range(len(self)), n))
        return self._with(tuple(self.prompts[i] for i in chosen))

    def filter(self, categories: str | Iterable[str]) -> PromptSet:
        """The prompts whose category is ``categories`` (or one of them)."""
        wanted = {categories} if isinstance(categories, str) else set(categories)
        return self._with(tuple(p for p in self.prompts if p.category in wanted))

    def without_ids(self, ids: Iterable[str]) -> PromptSet:
        """The prompts whose id is not in ``ids`` (what is left to do after a resumed run)."""
        drop = set(ids)
        return self._with(tuple(p for p in self.prompts if p.id not in drop))

    def concat(self, other: PromptSet) -> PromptSet:
        """This set followed by ``other``; name and roles kept where they agree."""
        sources = [s for s in dict.fromkeys((self.source, other.source)) if s]
        columns = tuple(dict.fromkeys(self.columns + other.columns))
        roles = {k: v for k, v in self.roles.items() if other.roles.get(k) == v}
        return PromptSet(
            self.prompts + other.prompts,
            name=self.name or other.name,
            source=" + ".join(sources),
            columns=columns,
            roles=roles,
        )

    # -- serialisation -------------------------------------------------------

    def to_records(self) -> list[dict[str, Any]]:
        """One :meth:`Prompt.to_dict` mapping per prompt."""
        return [p.to_dict() for p in self.prompts]

    def to_jsonl(self, path: str | Path) -> Path:
        """Write one JSON record per line, atomically (temp file + rename); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                for record in self.to_records():
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_jsonl(cls, path: str | Path, *, name: str | None = None) -> PromptSet:
        """Read a file written by :meth:`to_jsonl`."""
        path = Path(path)
        try:
            # split on "\n" only: str.splitlines also breaks at U+2028 inside JSON strings
            lines = path.read_text(encoding="utf-8").split("\n")
        except FileNotFoundError:
            raise DataError(
                "file not found", where=str(path), fix="check the path and try again"
            ) from None
        prompts: list[Prompt] = []
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"invalid JSON: {exc.msg}", where=where, fix="write one JSON object per line"
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    "expected a JSON object", where=where, fix="write one JSON object per line"
                )
            try:
                prompts.append(Prompt.from_dict(record))
            except DataError as exc:
                raise DataError(exc.what, where=where, fix=exc.fix) from None
        return cls(tuple(prompts), name=path.stem if name is None else name, source=str(path))

    def with_unique_ids(self) -> PromptSet:
        """Give repeated ids a ``#2``, ``#3`` ... suffix; the first keeps its id."""
        taken = set(self.ids)
        if len(taken) == len(self):
            return self
        seen: set[str] = set()
        prompts: list[Prompt] = []
        for prompt in self.prompts:
            if prompt.id in seen:
                k = 2
                while f"{prompt.id}#{k}" in taken:
                    k += 1
                taken.add(f"{prompt.id}#{k}")
                prompt = replace(prompt, id=f"{prompt.id}#{k}")
            seen.add(prompt.id)
            prompts.append(prompt)
        return self._with(tuple(prompts))

    def _with(self, prompts: tuple[Prompt, ...]) -> PromptSet:
        return replace(self, prompts=prompts, roles=dict(self.roles))


def describe(prompts: PromptSet, sample_size: int = 3) -> dict[str, Any]:
    """A JSON-ready summary: rows, columns, roles, category counts and the first prompts."""
    categories = Counter(c for c in prompts.categories if c is not None)
    return {
        "name": prompts.name,
        "source": prompts.source,
        "rows": len(prompts),
        "columns": list(prompts.columns),
        "roles": dict(prompts.roles),
        "with_target": sum(t is not None for t in prompts.targets),
        "categories": dict(categories.most_common()),
        "uncategorised": sum(c is None for c in prompts.categories),
        "content_hash": prompts.content_hash,
        "sample": [
            {"id": p.id, "instruction": p.instruction, "target": p.target, "category": p.category}
            for p in prompts.prompts[:sample_size]
        ],
    }


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def train_val(
    prompts: PromptSet, n_train: int, n_val: int, seed: int = 0
) -> tuple[PromptSet, PromptSet]:
    """Shuffle with ``seed``, cut off ``n_val`` validation prompts, then take up to ``n_train``.

    The same arguments give the same cut every time, so a direction extracted
    on the training part is never selected on its own prompts. A set smaller
    than ``n_train + n_val`` keeps a quarter (at least one) for validation.
    """
    n = len(prompts)
    if n < 2:
        raise DataError(
            f"{prompts.name or 'the prompt set'} has {n} prompt(s); a train/validation cut needs 2",
            fix="give at least 2 prompts",
        )
    if n < n_train + n_val:
        n_val = max(1, min(n_val, n // 4))
    val, train = prompts.split((n_val / n, (n - n_val) / n), seed=seed)
    return train.sample(min(n_train, len(train)), seed=seed), val


def instructions_of(prompts: PromptSet | Sequence[str]) -> list[str]:
    """The instruction texts of a :class:`PromptSet` or a plain list of strings."""
    return [p if isinstance(p, str) else p.instruction for p in prompts]

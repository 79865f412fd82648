"""Rows to prompts: column detection and the checks every loader shares.

Column detection for tabular rows is case-insensitive and ignores ``_``,
``-`` and spaces (``SemanticCategory`` matches ``semantic_category``). The
first present name in each list below wins; ``column=`` and friends override.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from redblue.data.prompts import Prompt
from redblue.errors import DataError

# fmt: off
INSTRUCTION_COLUMNS: tuple[str, ...] = (
    "instruction", "prompt", "goal", "behavior", "question", "query", "request", "text", "input",
    "value", "template",
)
TARGET_COLUMNS: tuple[str, ...] = (
    "target", "target_response", "response", "completion", "output", "answer",
)
CATEGORY_COLUMNS: tuple[str, ...] = (
    "category", "semantic_category", "type", "functional_category", "harm_category",
)
# fmt: on
ID_COLUMNS: tuple[str, ...] = ("id", "behavior_id", "uid")


@dataclass(frozen=True)
class Columns:
    """A column name per prompt field: the caller's overrides, or the detected columns."""

    instruction: str | None = None
    target: str | None = None
    category: str | None = None
    id: str | None = None

    def roles(self) -> dict[str, str]:
        return {field: col for field, col in asdict(self).items() if col is not None}


@dataclass(frozen=True)
class Origin:
    """Where rows come from, to name them in errors: ``path:line`` or ``path (row n)``."""

    source: str
    by_line: bool

    def at(self, position: int) -> str:
        return f"{self.source}:{position}" if self.by_line else f"{self.source} (row {position})"


class Loaded(NamedTuple):
    prompts: list[Prompt]
    columns: tuple[str, ...]
    roles: dict[str, str]


def build_prompts(
    rows: Iterable[tuple[int, Any]],
    origin: Origin,
    request: Columns,
    stem: str,
    *,
    columns: Sequence[str] | None = None,
) -> Loaded:
    """Turn ``(position, row)`` pairs into prompts; a row is a string or a mapping."""
    rows = list(rows)
    if not rows:
        raise DataError("no prompts found", where=origin.source, fix="add at least one prompt")
    has_tables = any(isinstance(row, dict) for _, row in rows)
    if columns is None:
        columns = list(
            dict.fromkeys(str(k) for _, row in rows if isinstance(row, dict) for k in row)
        )
    fields = _resolve_columns(columns, request, origin.source) if has_tables else Columns()
    if not has_tables and request.roles():
        raise DataError(
            "column options were given but the rows are plain strings, without columns",
            where=origin.source,
            fix="drop column=, target_column=, category_column= and id_column=",
        )
    used = set(fields.roles().values())
    extras = [c for c in columns if c and c not in used]
    prompts: list[Prompt] = []
    for index, (position, row) in enumerate(rows):
        if isinstance(row, str):
            if not row.strip():
                raise _empty_prompt(origin.at(position), None)
            prompts.append(Prompt(instruction=row, id=f"{stem}-{index}"))
        elif isinstance(row, dict):
            prompts.append(_row_prompt(row, fields, extras, f"{stem}-{index}", origin, position))
        else:
            raise DataError(
                f"expected a string or an object, found a {type(row).__name__}",
                where=origin.at(position),
                fix="make every row a prompt string or an object with a prompt field",
            )
    return Loaded(prompts, tuple(columns), fields.roles())


def _row_prompt(
    row: Mapping[str, Any],
    fields: Columns,
    extras: Sequence[str],
    default_id: str,
    origin: Origin,
    position: int,
) -> Prompt:
    instruction = row.get(fields.instruction or "")
    if isinstance(instruction, int | float) and not isinstance(instruction, bool):
        instruction = str(instruction)
    if not isinstance(instruction, str) or not instruction.strip():
        raise _empty_prompt(origin.at(position), fields.instruction)
    meta = {c: s for c in extras if (s := cell(row.get(c))) is not None}
    nested = row.get("meta")
    if "meta" in meta and isinstance(nested, Mapping):
        # a row written by Prompt.to_dict: its meta is a mapping, kept as one
        del meta["meta"]
        meta |= {str(k): s for k, v in nested.items() if (s := cell(v)) is not None}
    row_id = cell(row.get(fields.id)) if fields.id else None
    return Prompt(
        instruction=instruction,
        id=row_id or default_id,
        target=cell(row.get(fields.target)) if fields.target else None,
        category=cell(row.get(fields.category)) if fields.category else None,
        meta=meta,
    )


def _empty_prompt(where: str, column: str | None) -> DataError:
    what = f"the prompt cell (column {column!r}) is empty" if column else "the prompt is empty"
    return DataError(what, where=where, fix="fill in the prompt or delete the row")


def cell(value: Any) -> str | None:
    """A cell as a string; ``None`` for missing or empty cells."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _resolve_columns(columns: Sequence[str], request: Columns, where: str) -> Columns:
    """Find each field's column: the override (exact or case-insensitive) or the first candidate."""
    by_key: dict[str, str] = {}
    for col in columns:
        by_key.setdefault(_key(col), col)
    seen = ", ".join(repr(c) for c in columns) or "none"

    def pick(override: str | None, candidates: Sequence[str], exclude: str | None) -> str | None:
        if override is not None:
            found = override if override in columns else by_key.get(_key(override))
            if found is None:
                raise DataError(
                    f"no column {override!r}; columns seen: {seen}",
                    where=where,
                    fix="pass one of the columns seen",
                )
            return found
        found_all = (by_key.get(_key(c)) for c in candidates)
        return next((f for f in found_all if f is not None and f != exclude), None)

    instruction = pick(request.instruction, INSTRUCTION_COLUMNS, None)
    if instruction is None:
        raise DataError(
            f"no prompt column found among the columns seen: {seen}",
            where=where,
            fix=f"pass column='NAME'; detected names are {', '.join(INSTRUCTION_COLUMNS)}",
        )
    return Columns(
        instruction=instruction,
        target=pick(request.target, TARGET_COLUMNS, instruction),
        category=pick(request.category, CATEGORY_COLUMNS, instruction),
        id=pick(request.id, ID_COLUMNS, instruction),
    )


def _key(column: str) -> str:
    return re.sub(r"[\W_]+", "", column.casefold())

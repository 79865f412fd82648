"""Load prompt sets from files, folders and Hugging Face datasets.

One entry point, :func:`load_prompts`, reads what users have: JSON, JSONL,
CSV, TSV, plain text, YAML (PyRIT templates included), Parquet, datasets
saved with ``save_to_disk``, hub datasets, and folders of any of these.

Column detection for tabular rows is case-insensitive and ignores ``_``,
``-`` and spaces (``SemanticCategory`` matches ``semantic_category``). The
first present name in each list below wins; ``column=`` and friends override:

* instruction: :data:`INSTRUCTION_COLUMNS` (``instruction``, ``prompt``, ``goal`` ...)
* target, the reference response paired with the prompt: :data:`TARGET_COLUMNS`
  (``target``, ``target_response``, ``response``, ``completion``, ``output``,
  ``answer``); never the instruction column itself.
* category: :data:`CATEGORY_COLUMNS`; id: :data:`ID_COLUMNS`.

Every other column is kept in ``Prompt.meta`` as a string. Bad input raises
:class:`~redblue.errors.DataError` naming the file and, where there is one,
the line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from redblue.data.prompts import Prompt, PromptSet, describe
from redblue.errors import DataError

__all__ = [
    "CATEGORY_COLUMNS",
    "ID_COLUMNS",
    "INSTRUCTION_COLUMNS",
    "SUPPORTED_FORMATS",
    "TARGET_COLUMNS",
    "describe",
    "detect_format",
    "load_prompts",
]

SUPPORTED_FORMATS: tuple[str, ...] = ("json", "jsonl", "csv", "tsv", "txt", "yaml", "parquet", "hf")

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

_EXTENSIONS: dict[str, str] = {
    f".{fmt}": fmt for fmt in ("json", "jsonl", "csv", "tsv", "txt", "yaml", "parquet")
} | {".ndjson": "jsonl", ".yml": "yaml", ".prompt": "yaml"}
_ALIASES: dict[str, str] = {"yml": "yaml", "ndjson": "jsonl", "datasets": "hf", "huggingface": "hf"}
_CONTAINER_KEYS = ("data", "prompts", "instructions", "behaviors", "rows", "examples", "items")
_DOC_FILE = re.compile(r"(readme|licen[cs]e|notice|source|changelog|copying)\b", re.IGNORECASE)
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass(frozen=True)
class _Columns:
    """A column name per prompt field: the caller's overrides, or the detected columns."""

    instruction: str | None = None
    target: str | None = None
    category: str | None = None
    id: str | None = None

    def roles(self) -> dict[str, str]:
        return {field: col for field, col in asdict(self).items() if col is not None}


@dataclass(frozen=True)
class _Origin:
    """Where rows come from, to name them in errors: ``path:line`` or ``path (row n)``."""

    source: str
    by_line: bool

    def at(self, position: int) -> str:
        return f"{self.source}:{position}" if self.by_line else f"{self.source} (row {position})"


class _Loaded(NamedTuple):
    prompts: list[Prompt]
    columns: tuple[str, ...]
    roles: dict[str, str]


# -- public API ---------------------------------------------------------------


def load_prompts(
    source: str | Path,
    *,
    format: str | None = None,
    column: str | None = None,
    target_column: str | None = None,
    category_column: str | None = None,
    id_column: str | None = None,
    split: str | None = None,
    name: str | None = None,
    dedupe: bool = False,
) -> PromptSet:
    """Load a prompt set from a file, a folder, or a Hugging Face dataset.

    ``source`` is a file, a folder (a ``save_to_disk`` dataset, or any folder
    whose supported files are loaded recursively in sorted order and
    concatenated; README/LICENSE/SOURCE files and hidden paths are skipped),
    or a hub dataset name (``owner/name``). ``format`` overrides the
    extension; on a plain folder it loads only files of that format.
    ``split`` picks a split of a Hugging Face dataset. Ids come from an id
    column, a template's file stem, or ``"{stem}-{row}"``; repeats get
    ``"#2"``, ``"#3"`` suffixes. Rows are kept as they are unless ``dedupe``.
    """
    fmt = _normalise_format(format)
    request = _Columns(column, target_column, category_column, id_column)
    path = Path(source).expanduser()
    if path.is_dir():
        label = path.name
        if fmt == "hf" or _is_saved_dataset(path):
            loaded = _load_hf(str(path), request, split, stem=name or label, local=True)
        else:
            _reject_split(split, path)
            loaded = _load_dir(path, fmt, request)
    elif path.is_file():
        label = path.stem
        _reject_split(split, path)
        loaded = _load_file(path, fmt or _format_of(path), request, stem=name or label)
    elif fmt == "hf" or (isinstance(source, str) and _looks_like_hub_name(source)):
        label = str(source).rsplit("/", 1)[-1]
        loaded = _load_hf(str(source), request, split, stem=name or label, local=False)
    else:
        raise DataError(
            "file or folder not found",
            where=str(source),
            fix="check the path; a Hugging Face hub dataset is named like 'owner/name'",
        )
    prompts = PromptSet(
        tuple(loaded.prompts),
        name=label if name is None else name,
        source=str(source),
        columns=loaded.columns,
        roles=loaded.roles,
    ).with_unique_ids()
    return prompts.dedupe() if dedupe else prompts


def detect_format(source: str | Path) -> str:
    """The format :func:`load_prompts` would use: one of :data:`SUPPORTED_FORMATS`, or ``"dir"``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return "hf" if _is_saved_dataset(path) else "dir"
    if path.is_file():
        return _format_of(path)
    if isinstance(source, str) and _looks_like_hub_name(source):
        return "hf"
    raise DataError("file or folder not found", where=str(source), fix="check the path")


# -- formats --------------------------------------------------------------------


def _normalise_format(format: str | None) -> str | None:
    if format is None:
        return None
    fmt = _ALIASES.get(format.lower().lstrip("."), format.lower().lstrip("."))
    if fmt not in SUPPORTED_FORMATS:
        raise DataError(
            f"unknown format {format!r}",
            where="format",
            fix=f"pass one of {', '.join(SUPPORTED_FORMATS)}",
        )
    return fmt


def _format_of(path: Path) -> str:
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of a {path.suffix or 'extension-less'!r} file",
            where=str(path),
            fix=f"use one of the extensions {', '.join(sorted(_EXTENSIONS))}, "
            f"or pass format= (one of {', '.join(SUPPORTED_FORMATS)})",
        )
    return fmt


def _is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` was written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    if (path / "dataset_dict.json").is_file():
        return True
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _looks_like_hub_name(source: str) -> bool:
    return bool(_HUB_NAME.fullmatch(source)) and Path(source).suffix.lower() not in _EXTENSIONS


def _reject_split(split: str | None, path: Path) -> None:
    if split is not None:
        raise DataError(
            f"split={split!r} applies only to Hugging Face datasets",
            where=str(path),
            fix="drop split=, or pass format='hf' for a folder of dataset files",
        )


def _load_file(path: Path, fmt: str, request: _Columns, *, stem: str) -> _Loaded:
    if fmt == "hf":
        raise DataError(
            "format='hf' needs a dataset folder or a hub dataset name, not a file",
            where=str(path),
            fix="pass the folder written by save_to_disk, or drop format=",
        )
    if fmt == "parquet":
        return _load_parquet(path, request, stem)
    text = _read_text(path)
    if not text.strip():
        raise DataError("file is empty", where=str(path), fix="add at least one prompt")
    if fmt == "json":
        return _from_document(_parse_json(text, path), path, request, stem)
    if fmt == "yaml":
        return _from_document(_parse_yaml(text, path), path, request, stem)
    if fmt == "jsonl":
        return _load_jsonl(text, path, request, stem)
    if fmt in ("csv", "tsv"):
        return _load_table(text, path, request, stem, delimiter="," if fmt == "csv" else "\t")
    return _load_txt(text, path, request, stem)


def _load_dir(folder: Path, fmt: str | None, request: _Columns) -> _Loaded:
    files = sorted(
        (p for p in folder.rglob("*") if _is_prompt_file(p, folder, fmt)),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        kinds = f"{fmt} files" if fmt else f"files ending in {', '.join(sorted(_EXTENSIONS))}"
        raise DataError(
            f"no prompt files found (looked for {kinds})",
            where=str(folder),
            fix="point at a file, or at a folder holding prompt files",
        )
    parts = [_load_file(f, fmt or _format_of(f), request, stem=f.stem) for f in files]
    prompts = [p for part in parts for p in part.prompts]
    columns = tuple(dict.fromkeys(c for part in parts for c in part.columns))
    with_roles = [part.roles for part in parts if part.roles]
    roles = {
        role: col
        for role, col in (with_roles[0].items() if with_roles else ())
        if all(r.get(role) == col for r in with_roles)
    }
    return _Loaded(prompts, columns, roles)


def _is_prompt_file(path: Path, folder: Path, fmt: str | None) -> bool:
    kind = _EXTENSIONS.get(path.suffix.lower())
    hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
    return (
        kind is not None
        and (fmt is None or kind == fmt)
        and not hidden
        and not _DOC_FILE.match(path.stem)
        and path.is_file()
    )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read the file: {exc.strerror}", where=str(path), fix="check the path"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not UTF-8 text ({exc.reason})",
            where=f"{path}:{line}",
            fix="re-save the file with UTF-8 encoding",
        ) from None


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON: {exc.msg} (column {exc.colno})",
            where=f"{path}:{exc.lineno}",
            fix="fix the JSON syntax at that line (a missing comma, quote or bracket)",
        ) from None


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DataError(
            f"invalid YAML: {problem}",
            where=where,
            fix="fix the YAML at that line (indentation, an unquoted ':' or a stray tab)",
        ) from None


def _from_document(doc: Any, path: Path, request: _Columns, stem: str) -> _Loaded:
    """Rows of a parsed JSON or YAML document: a list, a container object, or a template."""
    if doc is None:
        raise DataError("no prompts found", where=str(path), fix="add at least one prompt")
    if isinstance(doc, dict):
        for key in _CONTAINER_KEYS:
            if isinstance(doc.get(key), list):
                return _from_document(doc[key], path, request, stem)
        if isinstance(doc.get("value"), str) and request.instruction in (None, "value"):
            return _from_template(doc, path, stem)
        keys = ", ".join(repr(str(k)) for k in doc) or "none"
        raise DataError(
            f"expected a list of prompts, or an object with a list under one of "
            f"{', '.join(_CONTAINER_KEYS)}; found keys {keys}",
            where=str(path),
            fix="put the prompts in a list, or under a 'prompts' key",
        )
    if isinstance(doc, list):
        origin = _Origin(str(path), by_line=False)
        return _build(enumerate(doc, start=1), origin, request, stem)
    raise DataError(
        f"expected a list of prompts, found a {type(doc).__name__}",
        where=str(path),
        fix="put the prompts in a list",
    )


def _from_template(doc: dict[Any, Any], path: Path, stem: str) -> _Loaded:
    """A PyRIT-style template: the ``value`` text (with its ``{{ prompt }}`` slot) is the prompt."""
    value = doc["value"]
    if not value.strip():
        raise DataError(
            "the template's 'value' is empty", where=str(path), fix="give 'value' the template text"
        )
    meta = {str(k): s for k, v in doc.items() if k != "value" and (s := _cell(v)) is not None}
    prompt = Prompt(instruction=value, id=stem, category="template", meta=meta)
    return _Loaded([prompt], tuple(str(k) for k in doc), {"instruction": "value"})


def _load_jsonl(text: str, path: Path, request: _Columns, stem: str) -> _Loaded:
    rows: list[tuple[int, Any]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON: {exc.msg} (column {exc.colno})",
                where=f"{path}:{lineno}",
                fix="write one complete JSON object or string per line",
            ) from None
    return _build(rows, _Origin(str(path), by_line=True), request, stem)


def _load_table(text: str, path: Path, request: _Columns, stem: str, *, delimiter: str) -> _Loaded:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                continue
            if len(record) != len(header):
                raise DataError(
                    f"row has {len(record)} fields but the header has {len(header)}",
                    where=f"{path}:{line}",
                    fix="quote fields that contain the delimiter or line breaks, "
                    "and give every row one field per header column",
                )
            rows.append((line, dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        raise DataError(
            f"malformed {'CSV' if delimiter == ',' else 'TSV'}: {exc}",
            where=f"{path}:{reader.line_num}",
            fix="check the quoting at that line: a quoted field must end with a closing quote",
        ) from None
    return _build(rows, _Origin(str(path), by_line=True), request, stem, columns=header)


def _load_txt(text: str, path: Path, request: _Columns, stem: str) -> _Loaded:
    rows = [
        (lineno, line.strip())
        for lineno, line in enumerate(text.split("\n"), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return _build(rows, _Origin(str(path), by_line=True), request, stem)


def _load_parquet(path: Path, request: _Columns, stem: str) -> _Loaded:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read Parquet: {exc}", where=str(path), fix="check the file is Parquet"
        ) from None
    rows = enumerate(table.to_pylist(), start=1)
    origin = _Origin(str(path), by_line=False)
    return _build(rows, origin, request, stem, columns=table.column_names)


def _load_hf(
    source: str, request: _Columns, split: str | None, *, stem: str, local: bool
) -> _Loaded:
    """Rows of a Hugging Face dataset: a ``save_to_disk`` folder, a data folder or a hub name."""
    import datasets

    try:
        if local and _is_saved_dataset(Path(source)):
            loaded = datasets.load_from_disk(source)
        else:
            loaded = datasets.load_dataset(source, split=split)
    except Exception as exc:  # any failure to reach or read the dataset is the user's to fix
        where = "could not be read" if local else "could not be found locally or on the hub"
        raise DataError(
            f"dataset {where}: {exc}",
            where=source,
            fix="check the path or the hub name (owner/name); for a hub dataset, connect to "
            "the network once, or download it and pass the local folder",
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _pick_split(loaded, split, source)
    rows = enumerate(loaded.to_list(), start=1)
    origin = _Origin(source, by_line=False)
    return _build(rows, origin, request, stem, columns=list(loaded.column_names))


def _pick_split(splits: Mapping[str, Any], split: str | None, source: str) -> Any:
    names = ", ".join(splits)
    if split is None and len(splits) == 1:
        return next(iter(splits.values()))
    if split is None or split not in splits:
        what = "holds several splits" if split is None else f"has no split {split!r}"
        raise DataError(
            f"the dataset {what}: {names}", where=source, fix=f"pass split= (one of {names})"
        )
    return splits[split]


# -- rows to prompts ------------------------------------------------------------


def _build(
    rows: Iterable[tuple[int, Any]],
    origin: _Origin,
    request: _Columns,
    stem: str,
    *,
    columns: Sequence[str] | None = None,
) -> _Loaded:
    """Turn ``(position, row)`` pairs into prompts; a row is a string or a mapping."""
    rows = list(rows)
    if not rows:
        raise DataError("no prompts found", where=origin.source, fix="add at least one prompt")
    has_tables = any(isinstance(row, dict) for _, row in rows)
    if columns is None:
        columns = list(
            dict.fromkeys(str(k) for _, row in rows if isinstance(row, dict) for k in row)
        )
    fields = _resolve_columns(columns, request, origin.source) if has_tables else _Columns()
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
    return _Loaded(prompts, tuple(columns), fields.roles())


def _row_prompt(
    row: Mapping[str, Any],
    fields: _Columns,
    extras: Sequence[str],
    default_id: str,
    origin: _Origin,
    position: int,
) -> Prompt:
    instruction = row.get(fields.instruction or "")
    if isinstance(instruction, int | float) and not isinstance(instruction, bool):
        instruction = str(instruction)
    if not isinstance(instruction, str) or not instruction.strip():
        raise _empty_prompt(origin.at(position), fields.instruction)
    meta = {c: s for c in extras if (s := _cell(row.get(c))) is not None}
    row_id = _cell(row.get(fields.id)) if fields.id else None
    return Prompt(
        instruction=instruction,
        id=row_id or default_id,
        target=_cell(row.get(fields.target)) if fields.target else None,
        category=_cell(row.get(fields.category)) if fields.category else None,
        meta=meta,
    )


def _empty_prompt(where: str, column: str | None) -> DataError:
    what = f"the prompt cell (column {column!r}) is empty" if column else "the prompt is empty"
    return DataError(what, where=where, fix="fill in the prompt or delete the row")


def _cell(value: Any) -> str | None:
    """A cell as a string; ``None`` for missing or empty cells."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _resolve_columns(columns: Sequence[str], request: _Columns, where: str) -> _Columns:
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
    return _Columns(
        instruction=instruction,
        target=pick(request.target, TARGET_COLUMNS, instruction),
        category=pick(request.category, CATEGORY_COLUMNS, instruction),
        id=pick(request.id, ID_COLUMNS, instruction),
    )


def _key(column: str) -> str:
    return re.sub(r"[\W_]+", "", column.casefold())

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redblue.data.prompts import Prompt, PromptSet, describe
from redblue.data.rows import (
    CATEGORY_COLUMNS,
    ID_COLUMNS,
    INSTRUCTION_COLUMNS,
    TARGET_COLUMNS,
    Columns,
    Loaded,
    Origin,
    build_prompts,
    cell,
)
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


_EXTENSIONS: dict[str, str] = {
    f".{fmt}": fmt for fmt in ("json", "jsonl", "csv", "tsv", "txt", "yaml", "parquet")
} | {".ndjson": "jsonl", ".yml": "yaml", ".prompt": "yaml"}
_ALIASES: dict[str, str] = {"yml": "yaml", "ndjson": "jsonl", "datasets": "hf", "huggingface": "hf"}
_CONTAINER_KEYS = ("data", "prompts", "instructions", "behaviors", "rows", "examples", "items")
_DOC_FILE = re.compile(r"(readme|licen[cs]e|notice|source|changelog|copying)\b", re.IGNORECASE)
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


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
    request = Columns(column, target_column, category_column, id_column)
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


def _load_file(path: Path, fmt: str, request: Columns, *, stem: str) -> Loaded:
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


def _load_dir(folder: Path, fmt: str | None, request: Columns) -> Loaded:
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
    return Loaded(prompts, columns, roles)


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


def _from_document(doc: Any, path: Path, request: Columns, stem: str) -> Loaded:
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
        origin = Origin(str(path), by_line=False)
        return build_prompts(enumerate(doc, start=1), origin, request, stem)
    raise DataError(
        f"expected a list of prompts, found a {type(doc).__name__}",
        where=str(path),
        fix="put the prompts in a list",
    )


def _from_template(doc: dict[Any, Any], path: Path, stem: str) -> Loaded:
    """A PyRIT-style template: the ``value`` text (with its ``{{ prompt }}`` slot) is the prompt."""
    value = doc["value"]
    if not value.strip():
        raise DataError(
            "the template's 'value' is empty", where=str(path), fix="give 'value' the template text"
        )
    meta = {str(k): s for k, v in doc.items() if k != "value" and (s := cell(v)) is not None}
    prompt = Prompt(instruction=value, id=stem, category="template", meta=meta)
    return Loaded([prompt], tuple(str(k) for k in doc), {"instruction": "value"})


def _load_jsonl(text: str, path: Path, request: Columns, stem: str) -> Loaded:
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
    return build_prompts(rows, Origin(str(path), by_line=True), request, stem)


def _load_table(text: str, path: Path, request: Columns, stem: str, *, delimiter: str) -> Loaded:
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
    return build_prompts(rows, Origin(str(path), by_line=True), request, stem, columns=header)


def _load_txt(text: str, path: Path, request: Columns, stem: str) -> Loaded:
    rows = [
        (lineno, line.strip())
        for lineno, line in enumerate(text.split("\n"), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return build_prompts(rows, Origin(str(path), by_line=True), request, stem)


def _load_parquet(path: Path, request: Columns, stem: str) -> Loaded:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read Parquet: {exc}", where=str(path), fix="check the file is Parquet"
        ) from None
    rows = enumerate(table.to_pylist(), start=1)
    origin = Origin(str(path), by_line=False)
    return build_prompts(rows, origin, request, stem, columns=table.column_names)


def _load_hf(source: str, request: Columns, split: str | None, *, stem: str, local: bool) -> Loaded:
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
    origin = Origin(source, by_line=False)
    return build_prompts(rows, origin, request, stem, columns=list(loaded.column_names))


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

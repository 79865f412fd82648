"""Atomic file writes: a result file is complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["write_json"]


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to fill; on success it replaces ``folder`` (an
    earlier one is removed), on error it is deleted: the folder is complete or not there."""
    import shutil

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def paired_paths(path: str | Path) -> tuple[Path, Path]:
    """``PATH.safetensors`` and ``PATH.json`` for ``path`` given with either suffix or none."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in {".safetensors", ".json"} else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_paired(
    path: str | Path,
    tensors: dict[str, Any],
    metadata: dict[str, Any],
    *,
    header: dict[str, str],
) -> Path:
    """Write tensors to ``PATH.safetensors`` (with ``header`` as its metadata) and ``metadata``
    to ``PATH.json``, each through a temporary file and a rename; returns the tensors' path."""
    from safetensors.torch import save_file

    tensors_path, json_path = paired_paths(path)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tensors_path.with_name(tensors_path.name + ".partial")
    save_file(
        {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
        str(tmp),
        metadata=header,
    )
    tmp_json = json_path.with_name(json_path.name + ".partial")
    tmp_json.write_text(json.dumps(metadata, indent=1) + "\n")
    tmp.replace(tensors_path)
    tmp_json.replace(json_path)
    return tensors_path


def load_paired(
    path: str | Path, *, what: str, format: str, fix_missing: str, fix_format: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read what :func:`save_paired` wrote: ``(tensors, metadata)``, checking that both files
    exist and that the JSON's ``format`` is ``format``; errors name the file."""
    from safetensors.torch import load_file

    from redblue.errors import DataError

    tensors_path, json_path = paired_paths(path)
    for p in (tensors_path, json_path):
        if not p.is_file():
            raise DataError(f"{what} file {p} not found", where=str(path), fix=fix_missing)
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg}", where=f"{json_path}:{e.lineno}") from None
    if meta.get("format") != format:
        raise DataError(
            f"unknown {what} format {meta.get('format')!r}", where=str(json_path), fix=fix_format
        )
    return load_file(str(tensors_path)), meta

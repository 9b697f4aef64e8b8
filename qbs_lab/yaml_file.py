"""Reading the YAML files users write (station, plan, fault schedule) with line numbers for errors.

Stricter than ``yaml.safe_load`` where plain YAML lets a mistake through silently or hangs:

- a key given twice in one mapping is refused, naming both lines (YAML's "last one wins" once let a
  second ``safety:`` block replace every limit);
- aliases (``*name``) are refused where ``aliases=False`` (station files); elsewhere a document that
  aliases expand beyond :data:`MAX_NODES` nodes is refused (an "alias bomb" would otherwise hang
  whatever walks it);
- a file that is not UTF-8 text, nests too deep, or holds a value YAML cannot build (``2024-13-01``)
  is one line, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "MAX_NODES", "YamlFileError", "read_yaml"]

#: the most nodes a document may hold with its aliases expanded (a plan of 1000 items has ~10^4)
MAX_NODES = 100_000
#: the deepest a document may nest its [ ] and { } (users' files nest a few levels)
MAX_DEPTH = 100


class YamlFileError(Exception):
    """A file that cannot be read or is not YAML: one line, ``file[:line]: what``."""


def read_yaml(path: Path, what: str, *, aliases: bool = True) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (for line numbers) of ``path``, ``what`` naming it in errors.

    ``aliases=False`` refuses YAML anchors and aliases altogether (a station file has no use for them).
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise YamlFileError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise YamlFileError(
            f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{raw[err.start]:02x}): is it a binary file?"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise YamlFileError(f"{path}:{line}: the {what} holds a NUL byte: is it a binary file?")
    if _flow_depth(text) > MAX_DEPTH:  # PyYAML's parser takes seconds on thousands of [[[...
        raise YamlFileError(f"{path}: the {what} nests too deep to be read (more than {MAX_DEPTH} levels)")
    try:
        if not aliases:
            _refuse_aliases(text, path, what)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_nodes(node, path, what)
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.line + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise YamlFileError(f"{path}:{where} not valid YAML ({problem})") from None
    except RecursionError:
        raise YamlFileError(
            f"{path}: the {what} nests too deep to be read (more than {MAX_DEPTH} levels)"
        ) from None
    except (ValueError, OverflowError, TypeError) as err:  # a value YAML resolves but cannot build
        raise YamlFileError(f"{path}: not valid YAML ({err})") from None
    return doc, node


def _flow_depth(text: str) -> int:
    """The deepest nesting of [ and { (a bound: brackets in quoted text count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def _refuse_aliases(text: str, path: Path, what: str) -> None:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise YamlFileError(
                f"{path}:{event.start_mark.line + 1}: the {what} may not use YAML anchors or aliases"
                " (&name, *name): write each value out"
            )


def _check_nodes(root: yaml.Node, path: Path, what: str) -> None:
    """Duplicate keys (both lines) and the size with aliases expanded, in one walk.

    A node reached twice is an alias (PyYAML's composer shares the anchored node); its expanded size is
    counted once per reference, from a memo, so the walk itself stays linear in the file.
    """
    sizes: dict[int, int] = {}
    seen: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in seen:  # a node that contains itself: a recursive alias
            raise YamlFileError(f"{path}:{node.start_mark.line + 1}: a YAML alias refers to itself")
        seen.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    line = k.start_mark.line + 1
                    ident = (k.tag, k.value)
                    if ident in first:
                        raise YamlFileError(
                            f"{path}:{line}: key {k.value!r} is given twice, on line {first[ident]} and"
                            f" on line {line}: keep one"
                        )
                    first[ident] = line
                total += size(k) + size(v)
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
        if total > MAX_NODES:
            raise YamlFileError(
                f"{path}: the {what} expands to more than {MAX_NODES} values (YAML aliases repeated"
                " within aliases?)"
            )
        sizes[key] = total
        return total

    size(root)

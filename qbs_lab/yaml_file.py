"""Reading the YAML files users write (station, plan, fault schedule) with line numbers for errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["YamlFileError", "read_yaml"]


class YamlFileError(Exception):
    """A file that cannot be read or is not YAML: one line, ``file[:line]: what``."""


def read_yaml(path: Path, what: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (for line numbers) of ``path``, ``what`` naming it in errors."""
    try:
        text = path.read_text()
    except OSError as err:
        raise YamlFileError(f"{path}: cannot read the {what} ({err.strerror})") from None
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.line + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise YamlFileError(f"{path}:{where} not valid YAML ({problem})") from None

"""What a procedure is, and how one is found and given its parameters.

A procedure is a module (one of ``qbs_lab.procedures``, or a user's own ``.py`` file run by path) with

- ``Parameters``: a dataclass whose fields are the procedure's typed parameters, each with a default
  that runs as-is on the simulated lab; :func:`param` attaches units and a one-line help;
- ``plan(p: Parameters) -> Plan``: the sweep those parameters describe;
- optionally ``analyze(ds: xarray.Dataset) -> dict``: the procedure's own verdict on a completed run
  (a JSON-ready dict with a one-line ``"summary"``), stored in the run's ``checks`` attribute.

``qbs-lab run NAME --set key=value`` parses each value by the field's type: a number, a whole number,
``true``/``false``, text, or for a tuple of numbers either ``0.05,0.1,0.2`` or ``start:stop:num``
(``num`` evenly spaced values, ends included).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import pkgutil
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbs_lab.plan import Plan, linspace

__all__ = [
    "MAX_POINTS",
    "Procedure",
    "ProcedureError",
    "check_parameters",
    "describe_parameters",
    "list_procedures",
    "load_procedure",
    "param",
    "parameters_from_dict",
    "parse_settings",
]


class ProcedureError(Exception):
    """A procedure that cannot be found or loaded, or a parameter a user set wrongly."""


#: the most points a plan may have (a million points at a second each is 12 days of fridge time)
MAX_POINTS = 1_000_000
#: parameters in these units must be > 0 (rates, frequencies, temperatures), in seconds >= 0
_POSITIVE_UNITS = {"T/s", "V/s", "Hz", "K"}


def param(default: Any, units: str = "", help: str = "") -> Any:
    """A procedure parameter with its default, units and a one-line help."""
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata={"units": units, "help": help})


@dataclass(frozen=True)
class Procedure:
    """A loaded procedure: its name, its module's Parameters class and plan function, where it came from."""

    name: str
    parameters: type
    plan_fn: Callable[[Any], Plan]
    source: str | None  # the file of a user's procedure; None for a built-in one
    doc: str
    analyze: Callable[[Any], dict[str, Any]] | None = None

    def plan(self, params: Any) -> Plan:
        try:
            plan = self.plan_fn(params)
        except ValueError as err:  # an axis or plan the parameters make impossible
            raise ProcedureError(f"procedure {self.name}: {err}") from None
        except MemoryError:
            raise ProcedureError(
                f"procedure {self.name}: plan() ran out of memory: too many points"
            ) from None
        except Exception as err:  # a user's plan() with a bug: its error, in one line
            raise ProcedureError(
                f"procedure {self.name}: plan() failed ({type(err).__name__}: {_first_line(err)})"
            ) from None
        if not isinstance(plan, Plan):
            raise ProcedureError(f"procedure {self.name}: plan() returned {type(plan).__name__}, not a Plan")
        if plan.size > MAX_POINTS:
            grid = " x ".join(f"{a.name}[{len(a.values)}]" for a in plan.axes)
            raise ProcedureError(
                f"procedure {self.name}: {plan.size:,} points ({grid}) are more than {MAX_POINTS:,}:"
                " split the plan"
            )
        return dataclasses.replace(plan, procedure=self.name, parameters=dataclasses.asdict(params))


def list_procedures() -> list[str]:
    """The built-in procedures' names."""
    import qbs_lab.procedures as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def load_procedure(name_or_path: str) -> Procedure:
    """A built-in procedure by name, or a user's procedure file by path (anything ending in .py)."""
    if name_or_path.endswith(".py") or "/" in name_or_path or Path(name_or_path).suffix:
        path = Path(name_or_path)
        if not path.is_file():
            what = "a directory, not" if path.is_dir() else "no such"
            raise ProcedureError(f"{path}: {what} procedure file (a .py file, or a built-in name)")
        if path.suffix != ".py":
            raise ProcedureError(f"{path}: a procedure file is Python source ending in .py")
        name = path.stem
        spec = importlib.util.spec_from_file_location(f"qbs_lab_user_procedure_{name}", path)
        if spec is None or spec.loader is None:
            raise ProcedureError(f"{path}: cannot be loaded as Python source")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while being made
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as err:  # the user's module, whatever it raises (also exit())
            sys.modules.pop(spec.name, None)
            raise ProcedureError(f"{path}: cannot load ({type(err).__name__}: {_first_line(err)})") from None
        source: str | None = str(path.resolve())
    else:
        known = list_procedures()
        if name_or_path not in known:
            raise ProcedureError(
                f"no procedure {name_or_path!r}; the built-in ones are {', '.join(known)}"
                " (or give a path to your own .py file)"
            )
        name = name_or_path
        module = importlib.import_module(f"qbs_lab.procedures.{name}")
        source = None
    return _from_module(name, module, source)


def _from_module(name: str, module: types.ModuleType, source: str | None) -> Procedure:
    where = source or f"qbs_lab.procedures.{name}"
    params = getattr(module, "Parameters", None)
    plan_fn = getattr(module, "plan", None)
    if params is None or not dataclasses.is_dataclass(params):
        raise ProcedureError(f"{where}: a procedure needs a dataclass named Parameters")
    if not callable(plan_fn):
        raise ProcedureError(f"{where}: a procedure needs a function plan(p: Parameters) -> Plan")
    doc = (module.__doc__ or "").strip().split("\n\n")[0]
    analyze = getattr(module, "analyze", None)
    return Procedure(name, params, plan_fn, source, doc, analyze if callable(analyze) else None)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else "no message"


def _field_types(proc: Procedure) -> dict[str, Any]:
    try:
        return typing.get_type_hints(proc.parameters)
    except Exception as err:  # a hint naming what the module does not define, or a typo in one
        raise ProcedureError(
            f"procedure {proc.name}: a type hint of Parameters cannot be resolved"
            f" ({type(err).__name__}: {_first_line(err)})"
        ) from None


def _parse(text: str, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if text.lower() == "none" and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        return _parse(text, kind, key)
    try:
        if kind is bool:
            if text.lower() in ("true", "yes", "1", "on"):
                return True
            if text.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if typing.get_origin(kind) is tuple:
            if text.count(":") == 2:
                start, stop, num = text.split(":")
                ends = (float(start), float(stop), int(num))
                try:
                    return linspace(*ends)
                except ValueError as err:  # parsed, but not a range (no points, or far too many)
                    raise ProcedureError(f"--set {key}={text}: {err}") from None
            return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        pass
    expected = {bool: "true or false", int: "a whole number", float: "a number"}.get(
        kind, "numbers as a,b,c or start:stop:num"
    )
    raise ProcedureError(f"--set {key}={text}: expected {expected}")


def parse_settings(proc: Procedure, settings: Sequence[str]) -> Any:
    """The procedure's Parameters with ``key=value`` settings applied (each parsed by its field type)."""
    types_ = _field_types(proc)
    values: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ProcedureError(f"--set {item}: expected key=value")
        if key not in types_:
            raise ProcedureError(
                f"--set {key}: procedure {proc.name} has no parameter {key!r}; it has {', '.join(types_)}"
            )
        values[key] = _parse(text.strip(), types_[key], key)
    return _build(proc, values)


def parameters_from_dict(proc: Procedure, values: dict[str, Any]) -> Any:
    """Parameters from stored JSON values (lists back to tuples)."""
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return _build(proc, fixed)


def _build(proc: Procedure, values: dict[str, Any]) -> Any:
    try:
        params = proc.parameters(**values)
    except (TypeError, ValueError) as err:
        raise ProcedureError(f"procedure {proc.name}: {err}") from None
    problems = check_parameters(params)
    if problems:
        raise ProcedureError(f"procedure {proc.name}: {'; '.join(problems)}")
    return params


def check_parameters(params: Any) -> list[str]:
    """Every number of ``params`` finite, and with the sign its units need: rates, frequencies and
    temperatures > 0 (when given), durations [s] >= 0. One line per problem (none: [])."""
    problems = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        values = value if isinstance(value, tuple) else (value,)
        units = f.metadata.get("units", "")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            shown = f"{f.name}={v!r}" if len(values) == 1 else f"{f.name} holds {v!r}"
            if not math.isfinite(v):
                problems.append(f"{shown}: must be a finite number")
            elif (units in _POSITIVE_UNITS or f.name == "rate" or f.name.endswith("_rate")) and v <= 0:
                problems.append(f"{shown}: must be > 0 {units}".rstrip())
            elif units == "s" and v < 0:
                problems.append(f"{shown}: must be >= 0 s")
            else:
                continue
            break
    return problems


def describe_parameters(proc: Procedure) -> list[str]:
    """One line per parameter: name, default, units, help."""
    _field_types(proc)  # a hint that cannot be resolved would stop --set: say so now
    lines = []
    for f in dataclasses.fields(proc.parameters):
        default = f.default
        shown = ",".join(f"{v:g}" for v in default) if isinstance(default, tuple) else default
        units = f" {f.metadata.get('units')}" if f.metadata.get("units") else ""
        lines.append(f"  {f.name} = {shown}{units}    {f.metadata.get('help', '')}".rstrip())
    return lines

"""Names that become paths are identifiers; a procedure file changed since its run started is not
resumed."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from qbs_lab.cli import main
from qbs_lab.plan import Axis, Measurement
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.runs import LabOptions, start_run
from qbs_lab.store import Catalog

STATION = Path(__file__).resolve().parent.parent / "station.yaml"

ESCAPE = '''"""Tries to write outside the data directory."""
from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    num: int = param(3, "", "points")


def plan(p: Parameters) -> Plan:
    return Plan("escape", axes=(Axis("NAME", tuple(range(p.num)), setter=lambda v: None),))
'''

MINE = '''"""My sweep."""
from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    num: int = param(8, "", "gate voltages")


def plan(p: Parameters) -> Plan:
    return Plan("mine", axes=(Axis("V_g", linspace(0.0, 2.0, p.num)),), fixed={"B": 0.0})
'''


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "x y", "1x", "", "ünï"])
def test_an_axis_or_variable_name_that_is_not_an_identifier_is_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an identifier"):
        Axis(name, (1.0, 2.0), setter=lambda v: None)
    with pytest.raises(ValueError, match="not an identifier"):
        Measurement(name, lambda: 0.0)


def test_a_plan_with_a_path_for_an_axis_name_is_refused_in_one_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    proc = work / "escape.py"
    proc.write_text(ESCAPE.replace("NAME", "../../../x"))
    data = work / "data"
    code, _, err = cli("run", str(proc), "--sim", "--station", str(STATION), "--data", str(data))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("qbs-lab: error: procedure escape: axis name '../../../x' is not an identifier")
    assert not data.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c", "escape.py"]


def test_a_measurement_may_not_take_the_name_t() -> None:
    with pytest.raises(ValueError, match="'t' is taken"):
        Measurement("t", lambda: 0.0)


def test_resume_refuses_a_procedure_file_changed_since_the_run_started(tmp_path: Path) -> None:
    path = tmp_path / "mine.py"
    path.write_text(MINE)
    data = tmp_path / "data"
    proc = load_procedure(str(path))

    def abort_after_three(k: int, index: tuple[int, ...], values: object) -> None:
        if k == 2:
            raise RuntimeError("stopped for the test")

    first = start_run(
        proc,
        parse_settings(proc, []),
        LabOptions(STATION, True, None, 0, data),
        progress=False,
        estimate=False,
        subscribers=[abort_after_three],
    )
    assert first.result.status == "aborted"
    path.write_text(MINE.replace("linspace(0.0, 2.0", "linspace(0.0, 2.0 "))  # same grid, other file
    code, _, err = cli("resume", first.run_id, "--data", str(data), "--no-progress")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line == (
        f"qbs-lab: error: run {first.run_id}: the procedure file {path} has changed since the run started;"
        " resuming would mix two versions in one dataset: start a new run instead"
    )
    assert Catalog(data).get(first.run_id).done == 3
    path.write_text(MINE)  # put back as it was: resumes
    code, _, err = cli("resume", first.run_id, "--data", str(data), "--no-progress")
    assert code == 0, err
    assert Catalog(data).get(first.run_id).state == "completed"

"""Bad inputs through the real command, in subprocesses: one clear line and a non-zero exit each, never
a traceback, a hang or a silent success. A representative subset of benchmarks/bad_inputs.py (which runs
them all and prints the table); the subset holds every kind the issue named."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "benchmarks" / "bad_inputs.py")
assert _spec is not None and _spec.loader is not None
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs"] = bad_inputs  # dataclasses look their module up while being made
_spec.loader.exec_module(bad_inputs)

SUBSET = {
    # expected text in the one error line
    "station: binary file": "is not UTF-8 text",
    "station: duplicate safety block": "key 'safety' is given twice, on line 38 and on line 77",
    "station: alias bomb, demo": "may not use YAML anchors or aliases",
    "station: gate at 1000 V on a 2450": "Keithley 2450 sources at most ±210 V",
    "station: rate 1e-300, estimate": "too slow",
    "station: instrument not reachable": "cannot reach GPIB0::8::INSTR",
    "--set field_isotherms hold=-5": "must be >= 0 s",
    "--set field_isotherms hold=nan": "must be a finite number",
    "--set field_sweep rate=0": "must be > 0 T/s",
    "--set field_sweep num=1000000000": "more than 1,000,000",
    "procedure: p.py (plan raises KeyError)": "plan() failed (KeyError",
    "procedure: p.py (unresolvable type hint)": "cannot be resolved",
    "procedure: not .py": "ending in .py",
    "plan file: binary": "is not UTF-8 text",
    "plan file: out of the station's limits": "outside the station's limits",
    "fault file: binary": "is not UTF-8 text",
    "cli: resume ²": "is not a run id",
    "data: runs --data FILE": "is a file, not a data directory",
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    cases = [c for c in bad_inputs.all_cases() if c.name in SUBSET]
    assert len(cases) == len(SUBSET)
    return {o.case.name: o for o in bad_inputs.run_cases(cases, jobs=2, timeout=120.0)}


@pytest.mark.parametrize("name", sorted(SUBSET))
def test_a_bad_input_ends_in_one_clear_line(outcomes: dict[str, object], name: str) -> None:
    o = outcomes[name]
    assert o.flags == [], (o.flags, o.message)  # no traceback, no hang, not accepted, not the last resort
    assert o.code == 2, (o.code, o.message)
    assert o.message.startswith("qbs-lab: error: ") or "error: argument" in o.message, o.message
    assert SUBSET[name] in o.message, o.message


def test_the_table_has_at_least_140_inputs() -> None:
    cases = bad_inputs.all_cases()
    assert len(cases) >= 140 and len({c.name for c in cases}) == len(cases)


def test_qcodes_tracebacks_stay_off_the_terminal(tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(bad_inputs.STATION)
    proc = subprocess.run(
        [sys.executable, "-m", "qbs_lab.cli", "station", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QBS_LAB_LOG": str(tmp_path / "qbs-lab.log")},
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()  # QCoDeS's own 25-line traceback is not here
    assert line.startswith("qbs-lab: error: station.yaml:9: instruments.lockin.address: cannot reach")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    # `qbs-lab procedures | head -0`: the reader is gone before the first line is written
    proc = subprocess.Popen(
        [sys.executable, "-m", "qbs_lab.cli", "procedures"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert err == "" and code == 141


def test_an_unexpected_error_is_one_line_with_the_traceback_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the last resort, for what no handler names: a fault injected where the command's work is done
    from qbs_lab import cli

    log = tmp_path / "qbs-lab.log"
    monkeypatch.setenv("QBS_LAB_LOG", str(log))

    def broken(args: object) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "_procedures", broken)
    assert cli.main(["procedures"]) == 1
    assert capsys.readouterr().err == f"qbs-lab: error: unexpected RuntimeError: boom (details in {log})\n"
    logged = log.read_text()
    assert "qbs-lab procedures" in logged and "Traceback (most recent call last)" in logged
    assert "RuntimeError: boom\nsecond line" in logged

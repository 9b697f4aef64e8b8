"""The station file: every mistake ends in one clear message naming file, line and key; no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STATION

from qbs_lab.station import StationError, load_station

CLI = [sys.executable, "-m", "qbs_lab.cli"]
GOOD = STATION.read_text()


def test_the_reference_station_loads_with_its_limits() -> None:
    cfg = load_station(STATION)
    assert (cfg.gate.min, cfg.gate.max, cfg.gate.max_step, cfg.gate.max_rate) == (-40, 40, 0.5, 1.0)
    assert cfg.gate.leakage_limit == 1e-9 and cfg.magnet.max_rate == 0.002
    assert cfg.thermometry.max_heater_range == 0.01 and cfg.rf is not None and cfg.rf.max_power == -10
    assert cfg.bias_resistor == 1e7 and cfg.roles["thermometry"]["mixing_chamber"] == 6


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


BROKEN = [
    # (description, edit of the good file, key path expected, text expected, line needle)
    (
        "unknown key",
        lambda t: t.replace("    max_step: 0.5", "    max_stepp: 0.5"),
        "safety.gate.max_stepp",
        "unknown key",
        "max_stepp",
    ),
    (
        "wrong type",
        lambda t: t.replace("max_rate: 1.0  ", "max_rate: fast  "),
        "safety.gate.max_rate",
        "must be a number, not 'fast'",
        "max_rate: fast",
    ),
    (
        "unknown driver class",
        lambda t: t.replace("Keithley.Keithley2450", "Keithley.Keithley9999"),
        "instruments.gate.type",
        "no driver class",
        "Keithley9999",
    ),
    ("missing role", lambda t: t.replace("  magnet: magnet\n", "", 1), "roles.magnet", "is missing", None),
    (
        "inverted limits",
        lambda t: t.replace("    min: -40.0", "    min: 50.0"),
        "safety.gate.max",
        "inverted limits",
        "    max: 40.0",
    ),
    (
        "role on the wrong instrument",
        lambda t: t.replace("  gate: gate\n", "  gate: lockin\n", 1),
        "roles.gate",
        "cannot play the gate role",
        "  gate: lockin",
    ),
]


@pytest.mark.parametrize(("what", "edit", "key", "text", "needle"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_station_file_ends_in_one_clear_message(
    tmp_path: Path, what: str, edit, key: str, text: str, needle: str | None
) -> None:
    broken = edit(GOOD)
    assert broken != GOOD, what
    path = tmp_path / "station.yaml"
    path.write_text(broken)
    with pytest.raises(StationError) as err:
        load_station(path)
    assert len(err.value.problems) == 1, err.value.problems
    problem = err.value.problems[0]
    assert problem.startswith(f"{path}:") and f" {key}: " in problem and text in problem
    if needle is not None:
        assert f"{path}:{_line_of(broken, needle)}:" in problem  # the line of the offending key
    proc = subprocess.run(
        [*CLI, "station", "check", str(path), "--sim"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"qbs-lab: error: {problem}"]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(GOOD.replace("  gate:\n    min: -40.0", "  gate:\n    min: [-40.0", 1))
    proc = subprocess.run([*CLI, "station", "check", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert re.match(rf"qbs-lab: error: {re.escape(str(path))}:\d+: not valid YAML \(", line)


def test_every_problem_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(
        GOOD.replace("max_rate: 1.0  ", "max_rate: fast  ")
        .replace("    min: -40.0", "    min: 50.0")
        .replace("bias_resistor: 10.0e6", "bias_resistor: -1")
    )
    with pytest.raises(StationError) as err:
        load_station(path)
    keys = sorted(p.split(": ")[1] for p in err.value.problems)
    assert keys == ["measurement.bias_resistor", "safety.gate.max", "safety.gate.max_rate"]


def test_an_unreachable_address_is_named(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    # a TCP port on this machine where nothing listens: the real transport refuses at once
    path.write_text(GOOD.replace("GPIB0::8::INSTR", "TCPIP0::127.0.0.1::9::SOCKET"))
    proc = subprocess.run([*CLI, "station", "check", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert (
        f"{path}:" in line and "instruments.lockin.address: cannot reach TCPIP0::127.0.0.1::9::SOCKET" in line
    )


def test_station_check_on_the_simulated_lab_prints_every_role_live() -> None:
    proc = subprocess.run(
        [*CLI, "station", "check", str(STATION), "--sim"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for role, reading in [
        ("lockin", "R = "),
        ("gate", "V_g = "),
        ("magnet", "B = "),
        ("thermometry", "T_mc = "),
        ("rf", "GHz"),
    ]:
        line = next(ln for ln in out.splitlines() if ln.startswith(role))
        assert reading in line
    # live values from the simulated lab: base temperature, field at zero, R of the normal state at 0 V
    T_mc = float(re.search(r"T_mc = ([\d.e-]+) K", out).group(1))  # type: ignore[union-attr]
    R = float(re.search(r"R = ([\d.e+-]+) Ohm", out).group(1))  # type: ignore[union-attr]
    assert 0.01 < T_mc < 0.02 and 5e3 < R < 5e4
    assert out.count("limits:") == 5

"""Station, plan and fault files: duplicate keys and aliases refused; every limit checked against what the
instrument can do and against physical sense; procedure parameters finite and signed; queue items
checked against the station's limits when queued."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import STATION

from qbs_lab import cli
from qbs_lab.procedure import MAX_POINTS, ProcedureError, load_procedure, parse_settings
from qbs_lab.queue import Queue, QueueError, settings_from_yaml
from qbs_lab.sim.faults import FaultError, FaultSchedule
from qbs_lab.station import StationError, load_station
from qbs_lab.station_limits import INSTRUMENT_RANGES, MAX_RAMP_TIME
from qbs_lab.yaml_file import MAX_NODES, YamlFileError, read_yaml

GOOD = STATION.read_text()
GS200 = "qcodes.instrument_drivers.yokogawa.YokogawaGS200"


def station(tmp_path: Path, *edits: tuple[str, str], append: str = "") -> Path:
    text = GOOD
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "station.yaml"
    path.write_text(text + append)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StationError) as err:
        load_station(path)
    return err.value.problems


def line_of(path: Path, text: str, nth: int = 1) -> int:
    lines = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    return lines[nth - 1]


# -- duplicate keys and aliases ------------------------------------------------------------------------
def test_a_second_safety_block_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = station(tmp_path, append="safety:\n  gate: {min: -400, max: 400, max_step: 50}\n")
    first, second = line_of(path, "safety:"), line_of(path, "safety:", 2)
    assert problems(path) == [
        f"{path}:{second}: key 'safety' is given twice, on line {first} and on line {second}: keep one"
    ]


def test_a_key_repeated_inside_a_section_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = station(tmp_path, ("    max: 40.0 ", "    max: 40.0\n    max: 400 "))
    (problem,) = problems(path)
    first = line_of(path, "    max: 40.0")
    assert f"on line {first} and on line {first + 1}" in problem and "'max'" in problem


def test_plan_and_fault_files_refuse_duplicate_keys_too(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("items:\n  - procedure: field_sweep\n    set: {num: 3}\n    set: {num: 300}\n")
    with pytest.raises(QueueError) as err:
        settings_from_yaml(plan)
    assert err.value.problems == [f"{plan}:4: key 'set' is given twice, on line 3 and on line 4: keep one"]
    faults = tmp_path / "faults.yaml"
    faults.write_text("faults:\n  - kind: quench\n    at_time: 10\n    at_time: 20\n")
    with pytest.raises(FaultError) as ferr:
        FaultSchedule.from_yaml(faults)
    assert ferr.value.problems == [
        f"{faults}:4: key 'at_time' is given twice, on line 3 and on line 4: keep one"
    ]


def test_the_same_key_in_two_mappings_is_fine(tmp_path: Path) -> None:
    # max_rate is in both safety.gate and safety.magnet: not a duplicate
    assert load_station(STATION).magnet.max_rate == 0.002


def test_station_files_refuse_aliases_and_the_alias_bomb_ends_at_once(tmp_path: Path) -> None:
    bomb = "".join(f"l{k}: &l{k} [{','.join([f'*l{k - 1}'] * 9) if k else '1'}]\n" for k in range(12))
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    assert problems(path) == [
        f"{path}:1: the station file may not use YAML anchors or aliases (&name, *name): write each value out"
    ]
    # elsewhere an anchor is fine, but what it expands to is bounded
    with pytest.raises(YamlFileError, match=f"expands to more than {MAX_NODES} values"):
        read_yaml(path, "plan file")
    small = tmp_path / "small.yaml"
    small.write_text("a: &a {num: 3}\nb: *a\n")
    assert read_yaml(small, "plan file")[0] == {"a": {"num": 3}, "b": {"num": 3}}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (bytes(range(256)), "is not UTF-8 text (byte 0x80): is it a binary file?"),
        ("x: " + "[" * 3000 + "]" * 3000, "nests too deep to be read"),
        ("sample:\n  name: 2024-13-45\n", "not valid YAML (month must be in 1..12)"),
    ],
)
def test_unreadable_yaml_is_one_line(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}") and expected in problem


# -- limits against the instrument and physical sense ---------------------------------------------------
@pytest.mark.parametrize(
    ("edits", "key", "expected"),
    [
        (
            (("    max: 40.0 ", "    max: 1000.0 "),),
            "safety.gate.max",
            "Keithley 2450 sources at most ±210 V",
        ),
        ((("    min: -40.0", "    min: -250.0"),), "safety.gate.min", "Keithley 2450 sources at most ±210 V"),
        (
            (
                ("Keithley.Keithley2450", "yokogawa.YokogawaGS200"),
                ("current_limit: 1.0e-7", "current_limit: 1e-3"),
            ),
            "safety.gate.min",
            "Yokogawa GS200 sources at most ±32 V",
        ),
        ((("current_limit: 1.0e-7", "current_limit: 10"),), "safety.gate.current_limit", "1 nA to 1.05 A"),
        ((("max_field: 0.1 ", "max_field: 1e308 "),), "safety.magnet.max_field", "exceeds 20 T"),
        ((("max_rate: 0.002 ", "max_rate: 5 "),), "safety.magnet.max_rate", "faster than 1 T/s"),
        ((("max_temperature: 1.5 ", "max_temperature: 300 "),), "safety.thermometry.max_temperature", "~5 K"),
        (
            (("max_heater_range: 0.01", "max_heater_range: 10"),),
            "safety.thermometry.max_heater_range",
            "100 mA",
        ),
        ((("max_power: -10.0", "max_power: 100"),), "safety.rf.max_power", "-120 to +25 dBm"),
        ((("excitation: 0.01 ", "excitation: 100 "),), "measurement.excitation", "4 mV to 5 V rms"),
        ((("leakage_limit: 1.0e-9", "leakage_limit: 1e-3"),), "safety.gate.leakage_limit", "never trip"),
        ((("max_step: 0.5 ", "max_step: 500 "),), "safety.gate.max_step", "larger than the whole range"),
    ],
)
def test_implausible_limits_are_refused(
    tmp_path: Path, edits: tuple[tuple[str, str], ...], key: str, expected: str
) -> None:
    path = station(tmp_path, *edits)
    found = problems(path)
    assert f": {key}: " in found[0] and expected in found[0], found
    assert all("safety.gate.m" in p for p in found[1:]), found  # a GS200's min and max: both beyond it


def test_a_gs200_without_a_compliance_it_can_set_is_refused(tmp_path: Path) -> None:
    path = station(
        tmp_path,
        ("Keithley.Keithley2450", "yokogawa.YokogawaGS200"),
        ("    min: -40.0", "    min: -30.0"),
        ("    max: 40.0 ", "    max: 30.0 "),
        ("    current_limit: 1.0e-7  # A, the source's compliance\n", ""),
    )
    (problem,) = problems(path)
    assert (
        "safety.gate.current_limit: is not given, and the default 1e-07 is beyond the instrument" in problem
    )
    assert INSTRUMENT_RANGES["YokogawaGS200"]["current_limit"][0] == 1e-3  # QCoDeS's own validator's


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("max_rate: 1.0 ", "max_rate: 1e-300 "), "safety.gate.max_rate"),
        (("max_step: 0.5 ", "max_step: 1e-300 "), "safety.gate.max_step"),
        (("max_rate: 0.002 ", "max_rate: 1e-300 "), "safety.magnet.max_rate"),
    ],
)
def test_a_rate_or_step_too_small_to_finish_is_refused(
    tmp_path: Path, edit: tuple[str, str], key: str
) -> None:
    (problem,) = problems(station(tmp_path, edit))
    assert f": {key}: 1e-300 " in problem and "too s" in problem, problem
    if "rate" in key:
        assert f"at most {MAX_RAMP_TIME / 3600:g} h" in problem


def test_the_slowest_rate_allowed_still_loads(tmp_path: Path) -> None:
    # +-40 V in 48 h is 4.6e-4 V/s: 5e-4 V/s is slow but finite, and accepted
    assert load_station(station(tmp_path, ("max_rate: 1.0 ", "max_rate: 5.0e-4 "))).gate.max_rate == 5e-4


def test_one_bad_value_is_one_problem(tmp_path: Path) -> None:
    # 1e308 T is implausible; the magnet's rate is not then also blamed for a ramp that never ends
    path = station(
        tmp_path, ("max_field: 0.1 ", "max_field: 1e308 "), ("max_heater_range: 0.01", "max_heater_range: 10")
    )
    keys = [p.split(": ")[1] for p in problems(path)]
    assert keys == ["safety.magnet.max_field", "safety.thermometry.max_heater_range"]


# -- procedure parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("procedure", "setting", "expected"),
    [
        ("field_isotherms", "hold=-5", "hold=-5.0: must be >= 0 s"),
        ("field_isotherms", "hold=nan", "hold=nan: must be a finite number"),
        ("field_isotherms", "hold=inf", "hold=inf: must be a finite number"),
        ("field_sweep", "rate=0", "rate=0.0: must be > 0 T/s"),
        ("field_sweep", "rate=-1e-3", "rate=-0.001: must be > 0 T/s"),
        ("field_sweep", "T=0", "T=0.0: must be > 0 K"),
        ("field_isotherms", "temperatures=0.1,-0.1", "temperatures holds -0.1: must be > 0 K"),
        ("rf_sensitivity", "frequency=0", "frequency=0.0: must be > 0 Hz"),
        ("field_sweep", "num=1000000000", "a range of 1,000,000,000 points is more than 1,000,000"),
    ],
)
def test_parameters_are_finite_and_signed(procedure: str, setting: str, expected: str) -> None:
    proc = load_procedure(procedure)
    with pytest.raises(ProcedureError, match=r"^procedure ") as err:
        proc.plan(parse_settings(proc, [setting]))
    assert expected in str(err.value)


def test_a_plan_of_more_than_a_million_points_is_refused_before_it_runs() -> None:
    proc = load_procedure("phase_diagram")
    with pytest.raises(ProcedureError, match=f"3,000,000 points .* more than {MAX_POINTS:,}"):
        proc.plan(parse_settings(proc, ["V_num=1000", "B_num=1000"]))


USER_PROC = '''"""A user's procedure."""
from __future__ import annotations
from dataclasses import dataclass
from qbs_lab.plan import Axis, Plan
from qbs_lab.procedure import param

@dataclass(frozen=True)
class Parameters:
    num: {hint} = param(3, "", "points")

def plan(p: Parameters) -> Plan:
    {body}
'''


@pytest.mark.parametrize(
    ("hint", "body", "expected"),
    [
        ("int", "return {}['missing']", "plan() failed (KeyError: 'missing')"),
        ("int", "return 1 / 0", "plan() failed (ZeroDivisionError: division by zero)"),
        ("NoSuchType", "return None", "a type hint of Parameters cannot be resolved (NameError:"),
    ],
)
def test_a_users_broken_procedure_is_one_line(tmp_path: Path, hint: str, body: str, expected: str) -> None:
    path = tmp_path / "mine.py"
    path.write_text(USER_PROC.format(hint=hint, body=body))
    proc = load_procedure(str(path))
    with pytest.raises(ProcedureError) as err:
        proc.plan(parse_settings(proc, []))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_procedure_path_that_is_not_python_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ProcedureError, match=r"a procedure file is Python source ending in \.py"):
        load_procedure(str(tmp_path / "notes.txt"))
    with pytest.raises(ProcedureError, match="a directory, not procedure file"):
        load_procedure(f"{tmp_path}/")
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(ProcedureError, match=r"cannot load \(SystemExit: 3\)"):
        load_procedure(str(tmp_path / "quits.py"))


def test_reference_procedures_still_take_their_defaults() -> None:
    for name in ("field_isotherms", "field_sweep", "rf_sensitivity", "temperature_sweep", "excitation_check"):
        proc = load_procedure(name)
        params = parse_settings(proc, [])
        assert proc.plan(params).size > 0
        assert dataclasses.asdict(params)


# -- the queue checks items against the station when they are queued -----------------------------------
def test_queue_add_and_load_refuse_items_outside_the_stations_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    argv = ["--data", str(data), "--station", str(STATION)]
    assert cli.main(["queue", "add", "field_sweep", "--set", "B_stop=0.5", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    (line,) = err
    assert line.startswith(f"qbs-lab: error: {STATION}: field_sweep: outside the station's limits: B = ")
    assert line.endswith("T is outside the limit |B| <= 0.1 T")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "items:\n  - procedure: field_sweep\n    set: {num: 3}\n"
        "  - procedure: gate_sweep\n    set: {V_stop: 300}\n"
    )
    assert cli.main(["queue", "load", str(plan), *argv]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"qbs-lab: error: {STATION}: gate_sweep: outside the station's limits: V_g = ")
    assert Queue(data).items() == []  # nothing queued: neither the bad item nor the good one before it
    assert cli.main(["queue", "load", str(plan.with_name("none.yaml")), *argv]) == 2
    assert cli.main(["queue", "add", "field_sweep", "--set", "num=3", *argv]) == 0
    assert [i.procedure for i in Queue(data).items()] == ["field_sweep"]


def test_queue_add_refuses_a_station_file_with_implausible_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = station(tmp_path, ("max_temperature: 1.5 ", "max_temperature: 300 "))
    assert (
        cli.main(["queue", "add", "field_sweep", "--data", str(tmp_path / "d"), "--station", str(path)]) == 2
    )
    assert "max_temperature: 300 is implausible" in capsys.readouterr().err


# -- the table agrees with the drivers' own validators where they have them -----------------------------
def test_the_instrument_ranges_are_the_qcodes_drivers_own_validators() -> None:
    from qcodes.instrument_drivers.yokogawa import YokogawaGS200

    from qbs_lab.sim import SimLab

    def bounds(parameter: object) -> tuple[float, float]:
        vals = parameter.vals  # type: ignore[attr-defined]
        return (vals.min_value, vals.max_value)

    with SimLab.from_station(STATION) as lab, load_station(STATION).connect(lab=lab) as st:
        assert bounds(st.drivers["rf"].power) == INSTRUMENT_RANGES["RohdeSchwarzSGS100A"]["max_power"][:2]
        assert bounds(st.drivers["lockin"].amplitude) == INSTRUMENT_RANGES["SR830"]["excitation"][:2]
    gs = YokogawaGS200("gs200_limits", "GPIB::1::INSTR", pyvisa_sim_file="Yokogawa_GS200.yaml")
    try:
        assert bounds(gs.current_limit) == INSTRUMENT_RANGES["YokogawaGS200"]["current_limit"][:2]
    finally:
        gs.close()

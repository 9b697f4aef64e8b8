"""Bad inputs through the real ``qbs-lab`` command: every one must end in one clear line and a non-zero
exit, never a traceback, a hang or a silent success.

Each case runs ``python -m qbs_lab.cli ARGS`` in a subprocess, in a directory of its own holding the
files it needs (a copy of the reference station file, a broken station/plan/fault/procedure file, a
data directory with one completed run). The table gives each case's exit code and the message the user
reads (the last line on stderr); the flags column marks what must never happen:

    TRACEBACK  a Python traceback on the terminal
    HANG       no exit within the timeout (--timeout, default 60 s)
    ACCEPTED   exit 0: the bad input went through silently
    LASTRESORT the command's last-resort handler caught it (one line, but not a case handled by name)

Run from the repository root (two cases at a time by default; the machine's other work goes on):

    python benchmarks/bad_inputs.py [--jobs 2] [--timeout 60] [--only SUBSTRING]

``tests/test_bad_inputs.py`` runs a representative subset of the same cases.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATION = (ROOT / "station.yaml").read_text()


@dataclass
class Case:
    name: str
    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    needs_run: bool = False  # a data directory with one completed run, as ./data


@dataclass
class Outcome:
    case: Case
    code: int | None
    message: str
    flags: list[str]
    seconds: float


def _station(*edits: tuple[str, str], append: str = "") -> str:
    text = STATION
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text + append


def _gs200(*edits: tuple[str, str]) -> str:
    return _station(
        (
            "qcodes.instrument_drivers.Keithley.Keithley2450",
            "qcodes.instrument_drivers.yokogawa.YokogawaGS200",
        ),
        *edits,
    )


GATE_MAX = ("    max: 40.0 ", "    max: {} ")
PROC_OK = '''"""A user's procedure."""
from __future__ import annotations
from dataclasses import dataclass
from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.procedure import param

@dataclass(frozen=True)
class Parameters:
    num: int = param(3, "", "points")

def plan(p: Parameters) -> Plan:
    {body}
'''


def _proc(body: str, head: str = "") -> str:
    return head + PROC_OK.format(body=body)


def station_cases() -> list[Case]:
    """Station files, read by `station check` (validation comes before any connection)."""
    bad: dict[str, str | bytes] = {
        "empty file": "",
        "binary file": bytes(range(256)) * 4,
        "latin-1 text": STATION.encode("utf-8").replace(b"GSn-A7", b"GSn-\xe97"),
        "NUL byte": STATION.replace("sample:\n", "sample:\x00\n"),
        "YAML syntax error": STATION.replace("    min: -40.0", "    min: [-40.0", 1),
        "tab indentation": STATION.replace("    min: -40.0", "\tmin: -40.0", 1),
        "top level a list": "- instruments\n- roles\n",
        "top level a number": "42\n",
        "duplicate safety block": _station(append="safety:\n  gate: {min: -400, max: 400}\n"),
        "duplicate key in a section": _station(("    max: 40.0 ", "    max: 40.0\n    max: 400 ")),
        "duplicate instrument": _station(("  gate:              #", "  lockin:\n    type: x.Y\n  gate: #")),
        "alias bomb": "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
        "one alias": _station(("  gate:\n    min:", "  gate: &g\n    min:"), append="extra: *g\n"),
        "recursive alias": "a: &a [*a]\n",
        "nesting 5000 deep": "x: " + "[" * 5000 + "]" * 5000 + "\n",
        "bad date value": _station(("  name: GSn-A7", "  name: 2024-13-45")),
        "unknown section": _station(append="safty:\n  gate: {}\n"),
        "misspelt key": _station(("    max_step: 0.5", "    max_stepp: 0.5")),
        "gate at 1000 V on a 2450": _station((GATE_MAX[0], GATE_MAX[1].format("1000.0"))),
        "gate at -1000 V on a 2450": _station(("    min: -40.0", "    min: -1000.0")),
        "GS200 at 40 V": _gs200(("    current_limit: 1.0e-7", "    current_limit: 1.0e-3")),
        "GS200 current_limit 100 nA": _gs200(
            ("    min: -40.0", "    min: -30.0"), ("    max: 40.0 ", "    max: 30.0 ")
        ),
        "magnet 1e308 T": _station(("max_field: 0.1 ", "max_field: 1e308 ")),
        "magnet 0 T": _station(("max_field: 0.1 ", "max_field: 0 ")),
        "magnet -1 T": _station(("max_field: 0.1 ", "max_field: -1 ")),
        "magnet .inf T": _station(("max_field: 0.1 ", "max_field: .inf ")),
        "magnet .nan T": _station(("max_field: 0.1 ", "max_field: .nan ")),
        "magnet text T": _station(("max_field: 0.1 ", "max_field: lots ")),
        "magnet true T": _station(("max_field: 0.1 ", "max_field: true ")),
        "magnet 50 T": _station(("max_field: 0.1 ", "max_field: 50 ")),
        "magnet rate 1e-300": _station(("max_rate: 0.002 ", "max_rate: 1e-300 ")),
        "magnet rate 5 T/s": _station(("max_rate: 0.002 ", "max_rate: 5 ")),
        "magnet poll 1e-9": _station(("max_rate: 0.002 ", "max_rate: 0.002\n    poll: 1e-9 ")),
        "fridge 300 K": _station(("max_temperature: 1.5 ", "max_temperature: 300 ")),
        "fridge -1 K": _station(("max_temperature: 1.5 ", "max_temperature: -1 ")),
        "heater 10 A": _station(("max_heater_range: 0.01", "max_heater_range: 10")),
        "RF +100 dBm": _station(("max_power: -10.0", "max_power: 100")),
        "RF -200 dBm": _station(("max_power: -10.0", "max_power: -200")),
        "gate rate 1e-300": _station(("max_rate: 1.0 ", "max_rate: 1e-300 ")),
        "gate step 1e-300": _station(("max_step: 0.5 ", "max_step: 1e-300 ")),
        "gate step 0": _station(("max_step: 0.5 ", "max_step: 0 ")),
        "gate step 500 V": _station(("max_step: 0.5 ", "max_step: 500 ")),
        "leakage above compliance": _station(("leakage_limit: 1.0e-9", "leakage_limit: 1.0e-3")),
        "leakage -1 A": _station(("leakage_limit: 1.0e-9", "leakage_limit: -1")),
        "compliance 10 A on a 2450": _station(("current_limit: 1.0e-7", "current_limit: 10")),
        "inverted gate limits": _station(("    min: -40.0", "    min: 45.0")),
        "safe value outside": _station(("safe_value: 0.0 ", "safe_value: 50.0 ")),
        "excitation 100 V": _station(("excitation: 0.01 ", "excitation: 100 ")),
        "excitation 0 V": _station(("excitation: 0.01 ", "excitation: 0 ")),
        "bias resistor -1": _station(("bias_resistor: 10.0e6", "bias_resistor: -1")),
        "settle residual 2": _station(("settle_residual: 1.0e-3", "settle_residual: 2")),
        "no safety section": _station(("safety:\n", "safety_removed:\n")),
        "no roles section": _station(("roles:\n", "rolez:\n")),
        "role names no instrument": _station(("  magnet: magnet\n", "  magnet: magnett\n")),
        "role on the wrong driver": _station(("  gate: gate\n", "  gate: lockin\n")),
        "thermometer channel 99": _station(("mixing_chamber: 6", "mixing_chamber: 99")),
        "same channel twice": _station(("sample: 8 ", "sample: 6 ")),
        "driver that does not exist": _station(("Lakeshore.LakeshoreModel372", "Lakeshore.Model9999")),
        "type not a class path": _station(
            ("type: qcodes.instrument_drivers.stanford_research.SR830", "type: SR830")
        ),
        "instrument without address": _station(("    address: GPIB0::18::INSTR\n", "")),
        "safe_state unknown": _station(("  gate: zero ", "  gate: explode ")),
        "suspenders unknown condition": _station(append="suspenders:\n  earthquake: pause\n"),
        "suspenders bad policy": _station(append="suspenders:\n  quench: panic\n"),
        "suspenders negative hold": _station(append="suspenders:\n  leakage: {policy: pause, hold: -5}\n"),
        "suspenders poll 1e-300": _station(append="suspenders:\n  io: {policy: pause, poll: 1e-300}\n"),
        "suspenders timeout 1e300": _station(
            append="suspenders:\n  quench: {policy: pause, timeout: 1e300}\n"
        ),
        "notify not a mapping": _station(append="notify: yes please\n"),
        "sample without name": _station(("  name: GSn-A7\n", "")),
        "instruments a list": "instruments:\n  - lockin\n  - gate\n" + STATION.split("# Which instrument")[1],
        "number 1e999": _station(("max_field: 0.1 ", "max_field: 1e999 ")),
    }
    cases = [
        Case(f"station: {name}", ["station", "check", "s.yaml"], {"s.yaml": text})
        for name, text in bad.items()
    ]
    cases += [
        Case("station: missing file", ["station", "check", "nope.yaml"]),
        Case("station: a directory", ["station", "check", "d"], {"d/x": ""}),
        Case(
            "station: instrument not reachable",
            ["station", "check", "station.yaml"],
            {"station.yaml": STATION},
        ),
        Case("station: binary, demo", ["demo", "--station", "s.yaml"], {"s.yaml": bytes(range(256))}),
        Case("station: alias bomb, demo", ["demo", "--station", "s.yaml"], {"s.yaml": bad["alias bomb"]}),
        Case(
            "station: duplicate key, sim serve",
            ["sim", "serve", "--station", "s.yaml"],
            {"s.yaml": bad["duplicate safety block"]},
        ),
        Case(
            "station: 1000 V, estimate",
            ["estimate", "gate_sweep", "--station", "s.yaml"],
            {"s.yaml": bad["gate at 1000 V on a 2450"]},
        ),
        Case(
            "station: rate 1e-300, estimate",
            ["estimate", "gate_sweep", "--station", "s.yaml"],
            {"s.yaml": bad["gate rate 1e-300"]},
        ),
        Case(
            "station: 300 K, run --sim",
            ["run", "gate_sweep", "--sim", "--station", "s.yaml"],
            {"s.yaml": bad["fridge 300 K"]},
        ),
        Case(
            "station: unknown scenario",
            ["run", "gate_sweep", "--sim", "--station", "s.yaml"],
            {"s.yaml": _station(("scenario: clean", "scenario: haunted"))},
        ),
    ]
    return cases


def settings_cases() -> list[Case]:
    """--set values, through `estimate` (parameters are checked before the twin starts)."""
    sets = {
        "field_sweep": [
            "num=abc",
            "num=1.5",
            "num=-1",
            "num=0",
            "num=1000000000",
            "num=2000000",
            "rate=0",
            "rate=-1",
            "rate=nan",
            "rate=inf",
            "T=0",
            "T=-0.1",
            "T=nan",
            "B_stop=5",
            "B_start=-5",
            "V_g=nan",
            "V_g=1e400",
            "V_g=100",
            "nosuch=1",
            "num",
            "=5",
            "num=",
        ],
        "field_isotherms": [
            "hold=-5",
            "hold=nan",
            "hold=inf",
            "temperatures=",
            "temperatures=a,b",
            "temperatures=0.1:0.2:x",
            "temperatures=0.1:0.2:1000000000",
            "temperatures=0.1,0.1",
            "temperatures=0,0.1",
            "temperatures=-0.1,0.1",
            "temperatures=10,20",
            "snake=maybe",
            "rate=0",
        ],
        "temperature_sweep": ["timeout=-1", "hold=-1", "tolerance=nan", "temperatures=0.1:0.2:0"],
        "rf_sensitivity": ["frequency=0", "frequency=-1e9", "powers=100", "repeats=0", "repeats=-3"],
        "gate_sweep": ["V_start=1,2", "V_stop=1e308", "num=1e3"],
        "phase_diagram": ["V_num=-5", "B_num=1000,1"],
    }
    cases = [
        Case(
            f"--set {proc} {s}",
            ["estimate", proc, "--set", s, "--station", "station.yaml"],
            {"station.yaml": STATION},
        )
        for proc, items in sets.items()
        for s in items
    ]
    cases.append(
        Case(
            "--set 3 x 1000 x 1000 points",
            [
                "estimate",
                "phase_diagram",
                "--set",
                "V_num=1000",
                "--set",
                "B_num=1000",
                "--station",
                "station.yaml",
            ],
            {"station.yaml": STATION},
        )
    )
    return cases


def procedure_cases() -> list[Case]:
    """A user's procedure file, through `estimate` (and `procedures` for the description)."""
    files: dict[str, str | bytes] = {
        "p.py (binary)": bytes(range(256)),
        "p.py (syntax error)": "def plan(:\n",
        "p.py (import error)": "import no_such_module_anywhere\n",
        "p.py (raises at import)": "raise RuntimeError('boom')\n",
        "p.py (exit at import)": "import sys\nsys.exit(3)\n",
        "p.py (no Parameters)": "def plan(p):\n    return None\n",
        "p.py (Parameters not a dataclass)": "class Parameters:\n    pass\n\ndef plan(p):\n    return None\n",
        "p.py (no plan)": _proc("return None").replace("def plan(", "def plan_("),
        "p.py (plan raises KeyError)": _proc("return {}['missing']"),
        "p.py (plan raises ZeroDivisionError)": _proc("return 1 / 0"),
        "p.py (plan returns None)": _proc("return None"),
        "p.py (axis of 10^9 points)": _proc('return Plan("p", axes=(Axis("B", linspace(0, 0.01, 10**9)),))'),
        "p.py (axis with nan)": _proc('return Plan("p", axes=(Axis("B", (0.0, float("nan"))),))'),
        "p.py (unknown axis kind)": _proc('return Plan("p", axes=(Axis("Q", (0.0, 1.0)),))'),
        "p.py (no axes)": _proc('return Plan("p", axes=())'),
        "p.py (unresolvable type hint)": _proc("return None").replace("num: int", "num: NoSuchType"),
        "p.py (parameter without default)": _proc("return None").replace(
            'num: int = param(3, "", "points")', "num: int"
        ),
        "p.py (field out of limits)": _proc('return Plan("p", axes=(Axis("B", (0.0, 5.0)),))'),
    }
    cases = [
        Case(
            f"procedure: {name}",
            ["estimate", "p.py", "--station", "station.yaml"],
            {"p.py": text, "station.yaml": STATION},
        )
        for name, text in files.items()
    ]
    cases += [
        Case(
            "procedure: missing .py",
            ["estimate", "nope.py", "--station", "station.yaml"],
            {"station.yaml": STATION},
        ),
        Case("procedure: a directory", ["run", "d/", "--sim"], {"d/x": ""}),
        Case("procedure: not .py", ["estimate", "notes.txt"], {"notes.txt": "hello\n"}),
        Case("procedure: not .py, run", ["run", "notes.txt", "--sim"], {"notes.txt": "hello\n"}),
        Case("procedure: unknown built-in", ["estimate", "fild_sweep"]),
        Case("procedure: procedures of unknown", ["procedures", "nope"]),
        Case("procedure: procedures of binary", ["procedures", "p.py"], {"p.py": bytes(range(256))}),
        Case(
            "procedure: procedures of unresolvable hint",
            ["procedures", "p.py"],
            {"p.py": files["p.py (unresolvable type hint)"]},
        ),
    ]
    return cases


def plan_file_cases() -> list[Case]:
    """Plan files for `queue load`."""
    ok_item = "items:\n  - procedure: field_sweep\n    set: {num: 3}\n"
    files: dict[str, str | bytes] = {
        "binary": bytes(range(256)),
        "empty": "",
        "syntax error": "items:\n  - procedure: [\n",
        "items not a list": "items: field_sweep\n",
        "items empty": "items: []\n",
        "top level a list": "- procedure: field_sweep\n",
        "item without procedure": "items:\n  - set: {num: 3}\n",
        "item with unknown key": "items:\n  - procedure: field_sweep\n    sett: {num: 3}\n",
        "set not a mapping": "items:\n  - procedure: field_sweep\n    set: num=3\n",
        "unknown procedure": "items:\n  - procedure: fild_sweep\n",
        "bad setting": "items:\n  - procedure: field_sweep\n    set: {num: many}\n",
        "setting hold=-5": "items:\n  - procedure: field_isotherms\n    set: {hold: -5}\n",
        "out of the station's limits": "items:\n  - procedure: field_sweep\n    set: {B_stop: 5}\n",
        "duplicate key in an item": "items:\n  - procedure: field_sweep\n    procedure: gate_sweep\n",
        "duplicate items key": ok_item + ok_item,
        "alias bomb": "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n" + ok_item,
        "nesting 5000 deep": "items: " + "[" * 5000 + "]" * 5000 + "\n",
    }
    cases = [
        Case(
            f"plan file: {name}",
            ["queue", "load", "plan.yaml", "--data", "d"],
            {"plan.yaml": text, "station.yaml": STATION},
        )
        for name, text in files.items()
    ]
    cases += [
        Case("plan file: missing", ["queue", "load", "nope.yaml", "--data", "d"], {"station.yaml": STATION}),
        Case(
            "plan file: a directory",
            ["queue", "load", "p", "--data", "d"],
            {"p/x": "", "station.yaml": STATION},
        ),
        Case(
            "plan file: no station file",
            ["queue", "load", "plan.yaml", "--data", "d"],
            {"plan.yaml": ok_item},
        ),
        Case(
            "queue add: out of limits",
            ["queue", "add", "field_sweep", "--set", "B_stop=5", "--data", "d"],
            {"station.yaml": STATION},
        ),
        Case(
            "queue add: hold=nan",
            ["queue", "add", "field_isotherms", "--set", "hold=nan", "--data", "d"],
            {"station.yaml": STATION},
        ),
        Case(
            "queue add: unknown procedure", ["queue", "add", "nope", "--data", "d"], {"station.yaml": STATION}
        ),
        Case(
            "queue add: station with 300 K",
            ["queue", "add", "field_sweep", "--data", "d"],
            {"station.yaml": _station(("max_temperature: 1.5 ", "max_temperature: 300 "))},
        ),
    ]
    return cases


def fault_file_cases() -> list[Case]:
    """Fault schedules for `run --sim --faults`."""
    files: dict[str, str | bytes] = {
        "binary": bytes(range(256)),
        "syntax error": "faults:\n  - {kind: quench, at_time: [\n",
        "unknown top key": "fault:\n  - {kind: quench, at_time: 10}\n",
        "unknown kind": "faults:\n  - {kind: earthquake, at_time: 10}\n",
        "negative time": "faults:\n  - {kind: quench, at_time: -10}\n",
        "time nan": "faults:\n  - {kind: quench, at_time: .nan}\n",
        "no trigger": "faults:\n  - {kind: quench}\n",
        "duplicate key": "faults:\n  - kind: quench\n    kind: runaway\n    at_time: 10\n",
        "alias bomb": "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nfaults: []\n",
        "a number": "42\n",
    }
    cases = [
        Case(
            f"fault file: {name}",
            ["run", "gate_sweep", "--sim", "--faults", "f.yaml", "--data", "d"],
            {"f.yaml": text, "station.yaml": STATION},
        )
        for name, text in files.items()
    ]
    cases += [
        Case(
            "fault file: missing",
            ["run", "gate_sweep", "--sim", "--faults", "nope.yaml"],
            {"station.yaml": STATION},
        ),
        Case(
            "fault file: without --sim",
            ["run", "gate_sweep", "--faults", "f.yaml"],
            {"f.yaml": "faults: []\n", "station.yaml": STATION},
        ),
        Case(
            "fault file: queue run without --sim",
            ["queue", "run", "--faults", "f.yaml", "--data", "d"],
            {"f.yaml": "faults: []\n", "station.yaml": STATION},
        ),
    ]
    return cases


def cli_cases() -> list[Case]:
    """Command-line arguments and data paths."""
    st = {"station.yaml": STATION}
    cases = [
        Case("cli: no command", []),
        Case("cli: unknown command", ["fly"]),
        Case("cli: resume ²", ["resume", "²"]),
        Case("cli: resume abc", ["resume", "abc"]),
        Case("cli: resume -1", ["resume", "--", "-1"]),
        Case("cli: resume 999", ["resume", "999"], needs_run=True),
        Case("cli: resume a completed run", ["resume", "1"], needs_run=True),
        Case("cli: export 999", ["export", "999", "--netcdf"], needs_run=True),
        Case("cli: export ²", ["export", "²", "--netcdf"]),
        Case("cli: export to a path under a file", ["export", "1", "-o", "f/x.nc"], {"f": "x"}, True),
        Case(
            "cli: export into a missing directory",
            ["export", "1", "--netcdf", "-o", "no/such/dir/x.nc"],
            needs_run=True,
        ),
        Case("cli: export onto a directory", ["export", "1", "--netcdf", "-o", "."], needs_run=True),
        Case("cli: runs --limit abc", ["runs", "--limit", "abc"]),
        Case("cli: run --seed -1", ["run", "gate_sweep", "--sim", "--seed", "-1"], st),
        Case("cli: run --seed x", ["run", "gate_sweep", "--sim", "--seed", "x"], st),
        Case("cli: run --seed ³", ["run", "gate_sweep", "--sim", "--seed", "³"], st),
        Case("cli: run --scenario nope", ["run", "gate_sweep", "--sim", "--scenario", "nope"], st),
        Case("cli: sim serve --port-base 80", ["sim", "serve", "--port-base", "80"], st),
        Case("cli: queue remove abc", ["queue", "remove", "abc"]),
        Case("cli: queue remove 99", ["queue", "remove", "99", "--data", "d"]),
        Case("cli: queue move 99 1", ["queue", "move", "99", "1", "--data", "d"]),
        Case("cli: queue bogus", ["queue", "bogus"]),
        Case("cli: run without procedure", ["run"]),
        Case("cli: estimate with a missing station", ["estimate", "gate_sweep", "--station", "nope.yaml"]),
        Case("cli: run without a station file", ["run", "gate_sweep", "--sim"]),
        Case(
            "cli: queue estimate, no station", ["queue", "estimate", "--station", "nope.yaml", "--data", "d"]
        ),
        Case("cli: analyze a missing store", ["analyze", "crossing", "nope.zarr"]),
        Case("cli: analyze a text file", ["analyze", "crossing", "x.nc"], {"x.nc": "not netcdf\n"}),
        Case("cli: analyze --x Q", ["analyze", "crossing", "data", "--x", "Q"], needs_run=True),
        Case("cli: analyze a binary file", ["analyze", "crossing", "x.zarr"], {"x.zarr": bytes(range(256))}),
        Case(
            "cli: analyze --over nothing",
            ["analyze", "crossing", "x.zarr", "--over", ""],
            {"x.zarr/.zgroup": "{}"},
        ),
    ]
    for command in (
        ["runs"],
        ["resume", "1"],
        ["export", "1", "--netcdf"],
        ["queue", "list"],
        ["queue", "add", "gate_sweep"],
        ["run", "gate_sweep", "--sim"],
    ):
        cases.append(
            Case(
                f"data: {' '.join(command[:2])} --data FILE",
                [*command, "--data", "f"],
                {"f": "a file\n", **st},
            )
        )
    cases += [
        Case(
            "data: run --data under a file",
            ["run", "gate_sweep", "--sim", "--data", "f/sub"],
            {"f": "a file\n", **st},
        ),
        Case(
            "data: runs --data a binary catalog",
            ["runs", "--data", "d"],
            {"d/catalog.sqlite": bytes(range(256)) * 8},
        ),
        Case(
            "data: queue list on a binary catalog",
            ["queue", "list", "--data", "d"],
            {"d/catalog.sqlite": b"SQLite format 3\x00" + bytes(2000)},
        ),
    ]
    return cases


def analysis_cases() -> list[Case]:
    """`analyze crossing` on datasets that are not numbers (written with xarray in the case's setup)."""
    return [
        Case("analyze: R all inf", ["analyze", "crossing", "inf.nc"], {"inf.nc": "@inf"}),
        Case("analyze: R as text", ["analyze", "crossing", "text.nc"], {"text.nc": "@text"}),
        Case("analyze: R all nan", ["analyze", "crossing", "nan.nc"], {"nan.nc": "@nan"}),
        Case("analyze: no R", ["analyze", "crossing", "noR.nc"], {"noR.nc": "@noR"}),
        Case("analyze: one isotherm", ["analyze", "crossing", "one.nc"], {"one.nc": "@one"}),
    ]


def all_cases() -> list[Case]:
    return (
        station_cases()
        + settings_cases()
        + procedure_cases()
        + plan_file_cases()
        + fault_file_cases()
        + cli_cases()
        + analysis_cases()
    )


def _dataset(kind: str, path: Path) -> None:
    import numpy as np
    import xarray as xr

    T, B = [0.06, 0.12, 0.24], np.linspace(0.006, 0.018, 7)
    R = np.full((len(T), len(B)), 1000.0)
    if kind == "inf":
        R[:] = np.inf
    if kind == "nan":
        R[:] = np.nan
    coords = {"T": T, "B": B}
    if kind == "text":
        ds = xr.Dataset({"R": (("T", "B"), np.full(R.shape, "high", dtype=object))}, coords=coords)
    elif kind == "noR":
        ds = xr.Dataset({"X": (("T", "B"), R)}, coords=coords)
    elif kind == "one":
        ds = xr.Dataset({"R": (("T", "B"), R[:1])}, coords={"T": T[:1], "B": B})
    else:
        ds = xr.Dataset({"R": (("T", "B"), R)}, coords=coords)
    ds.to_netcdf(path)


def _write_files(directory: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("@"):
            _dataset(content[1:], path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def make_completed_run(directory: Path) -> Path:
    """A data directory with one completed 3-point run (run 1), made through the CLI."""
    data = directory / "data"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "station.yaml").write_text(STATION)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "qbs_lab.cli",
            "run",
            "gate_sweep",
            "--sim",
            "--set",
            "num=3",
            "--no-progress",
        ],
        cwd=directory,
        capture_output=True,
        check=True,
        timeout=300,
    )
    return data


def run_case(case: Case, work: Path, run_data: Path | None, timeout: float) -> Outcome:
    directory = Path(tempfile.mkdtemp(dir=work))
    _write_files(directory, case.files)
    if case.needs_run and run_data is not None:
        shutil.copytree(run_data, directory / "data")
    env = {**os.environ, "QBS_LAB_LOG": str(work / "qbs-lab.log"), "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "qbs_lab.cli", *case.argv],
            cwd=directory,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Outcome(case, None, f"no exit within {timeout:g} s", ["HANG"], time.monotonic() - t0)
    seconds = time.monotonic() - t0
    flags = []
    text = proc.stdout + proc.stderr
    if "Traceback (most recent call last)" in text:
        flags.append("TRACEBACK")
    if proc.returncode == 0:
        flags.append("ACCEPTED")
    if "error: unexpected " in proc.stderr:
        flags.append("LASTRESORT")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    message = errors[0] if errors else lines[-1] if lines else proc.stdout.strip().splitlines()[-1:] or [""]
    message = message if isinstance(message, str) else message[0]
    return Outcome(case, proc.returncode, message.strip(), flags, seconds)


def run_cases(
    cases: list[Case], jobs: int = 2, timeout: float = 60.0, on_done: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="qbs-bad-inputs-") as tmp:
        work = Path(tmp)
        run_data = make_completed_run(work / "completed") if any(c.needs_run for c in cases) else None
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_case, c, work, run_data, timeout) for c in cases]
            outcomes = []
            for f in futures:
                outcomes.append(f.result())
                if on_done:
                    on_done(outcomes[-1])
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", default="", help="only the cases whose name holds this text")
    parser.add_argument("--skip", default=None, help="not the cases whose name holds this text")
    args = parser.parse_args()
    cases = [c for c in all_cases() if args.only in c.name and not (args.skip and args.skip in c.name)]
    print(f"{len(cases)} bad inputs through `python -m qbs_lab.cli`, {args.jobs} at a time\n")
    width = max(len(c.name) for c in cases)
    print(f"{'input':<{width}}  exit  {'flags':<10}  message")

    def show(o: Outcome) -> None:
        code = "-" if o.code is None else str(o.code)
        msg = o.message if len(o.message) <= 150 else o.message[:147] + "..."
        print(f"{o.case.name:<{width}}  {code:>4}  {','.join(o.flags):<10}  {msg}", flush=True)

    t0 = time.monotonic()
    outcomes = run_cases(cases, args.jobs, args.timeout, show)
    counts = {
        flag: sum(flag in o.flags for o in outcomes)
        for flag in ("TRACEBACK", "HANG", "ACCEPTED", "LASTRESORT")
    }
    codes: dict[int | None, int] = {}
    for o in outcomes:
        codes[o.code] = codes.get(o.code, 0) + 1
    print(
        f"\n{len(outcomes)} inputs in {time.monotonic() - t0:.0f} s: "
        + ", ".join(f"{n} {flag.lower()}" for flag, n in counts.items())
        + "; exit codes "
        + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
    )
    return 1 if counts["TRACEBACK"] or counts["HANG"] or counts["ACCEPTED"] else 0


if __name__ == "__main__":
    sys.exit(main())

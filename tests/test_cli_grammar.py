"""One grammar for the command line, a quiet console and honest progress.

The README's flag table is checked against the parser both ways (a flag is taken exactly where the
table says); each misuse ends in one line and exit 2, an unknown argument in the subcommand's usage;
``--help`` and ``--version`` import none of the heavy libraries; a run's console carries our lines only;
on a pseudo-terminal the progress line is cleared on every redraw; Ctrl-C says where each instrument
was left and resume where it continues, counting the whole run; fault schedules say what fired.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import xarray as xr
from test_cli_run import MY_PROC, ROOT, STATION, cli, ctrl_c_at

from qbs_lab.cli import SCENARIO_NAMES, _parser
from qbs_lab.store.catalog import Catalog

README = (ROOT / "README.md").read_text()
ENTRY = Path(sys.executable).parent / "qbs-lab"
CLI = [str(ENTRY)] if ENTRY.exists() else [sys.executable, "-m", "qbs_lab.cli"]
FLAGS = ("--station", "--sim", "--scenario", "--seed", "--faults", "--data")


def flag_table() -> dict[str, dict[str, bool]]:
    """The README's table: command -> flag -> taken."""
    start = README.index("<!-- flags: checked by tests/test_cli_grammar.py -->")
    rows = README[start:].split("\n\n")[0].splitlines()[1:]
    header = [c.strip(" `") for c in rows[0].strip("|").split("|")]
    assert tuple(header[1:]) == FLAGS, header
    table: dict[str, dict[str, bool]] = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for command in re.findall(r"`([^`]+)`", cells[0]):
            table[command] = {f: c == "yes" for f, c in zip(FLAGS, cells[1:], strict=True)}
    return table


def leaf(command: str) -> argparse.ArgumentParser:
    parser = _parser()
    for word in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def leaves(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix.strip()]
    return [n for name, p in subs[0].choices.items() for n in leaves(p, f"{prefix} {name}")]


def test_the_readme_table_lists_every_command_and_each_flag_where_the_parser_takes_it() -> None:
    table = flag_table()
    assert set(table) == set(leaves(_parser()))  # every command, none invented
    for command, flags in table.items():
        taken = leaf(command)._option_string_actions
        for flag, yes in flags.items():
            assert (flag in taken) == yes, (command, flag, yes)
        if flags["--station"]:  # what connects to instruments can show their messages
            assert "-v" in taken and "--verbose" in taken, command


def test_the_scenario_names_are_the_simulators() -> None:
    from qbs_lab.sim.sample import SCENARIOS

    assert sorted(SCENARIO_NAMES) == sorted(SCENARIOS)


def test_help_and_version_import_none_of_the_heavy_libraries() -> None:
    heavy = ("xarray", "scipy", "qcodes", "zarr", "matplotlib", "numpy", "pymeasure", "pyvisa")
    for argv in (["--help"], ["--version"], ["run", "--help"], ["queue", "run", "--help"]):
        code = (
            "import sys\nfrom qbs_lab.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            f"    pass\nprint('HEAVY', sorted(m for m in {heavy} if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip().splitlines()[-1] == "HEAVY []", (argv, out[-500:])
    version = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r"qbs_lab \d+\.\d+\.\d+\S*\n", version)


# -- misuse: one line, exit 2 ------------------------------------------------------------------------
MISUSE = {
    "run --scenario without --sim": (["run", "field_sweep", "--scenario", "rf_leak"], "--scenario"),
    "run --faults without --sim": (["run", "field_sweep", "--faults", "{tmp}/f.yaml"], "--faults"),
    "estimate --scenario without --sim": (["estimate", "field_sweep", "--scenario", "rf_leak"], "--scenario"),
    "station check --scenario without --sim": (["station", "check", "--scenario", "drifting"], "--scenario"),
    "queue run --scenario without --sim": (["queue", "run", "--scenario", "clean"], "--scenario"),
    "queue run --faults without --sim": (["queue", "run", "--faults", "{tmp}/f.yaml"], "--faults"),
    "queue estimate --scenario without --sim": (["queue", "estimate", "--scenario", "clean"], "--scenario"),
    "queue add outside the limits": (["queue", "add", "gate_sweep", "--set", "V_stop=80"], "V_g"),
}


@pytest.mark.parametrize("case", list(MISUSE))
def test_each_misuse_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    argv, expected = MISUSE[case]
    (tmp_path / "f.yaml").write_text("faults:\n  - {kind: quench, at_time: 10}\n")
    station = ["--station", str(STATION)]
    data = ["--data", str(tmp_path / "data")]
    if argv[0] == "estimate" or argv[:2] == ["station", "check"]:  # (these take no --data)
        data = []
    ran = cli(*(a.format(tmp=tmp_path) for a in argv), *station, *data)
    assert ran.code == 2, (ran.out, ran.err)
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbs-lab: error: "), ran.err
    assert expected in lines[0]
    assert "usage" not in ran.err and "Traceback" not in ran.err
    assert Catalog(tmp_path / "data").runs() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["estimate", "field_sweep", "--bogus"],
        ["resume", "3", "--netcdf"],
        ["queue", "add", "field_sweep", "--sim"],
        ["station", "check", "--faults", "x.yaml"],
    ],
)
def test_an_unknown_argument_prints_the_subcommands_usage(argv: list[str]) -> None:
    proc = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    command = " ".join(a for a in argv if not a.startswith("-") and not a[0].isdigit())
    command = " ".join(command.split()[: 2 if argv[0] in ("queue", "station") else 1])
    assert proc.stderr.startswith(f"usage: qbs-lab {command} "), proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"qbs-lab {command}: error: unrecognized")


# -- the flags do what they say -----------------------------------------------------------------------
def test_estimate_takes_sim_scenario_and_seed(tmp_path: Path) -> None:
    base = ["estimate", "gate_sweep", "--station", str(STATION), "--set", "num=5"]
    plain = cli(*base)
    assert plain.code == 0, plain.err
    ran = cli(*base, "--sim", "--scenario", "drifting", "--seed", "4")
    assert ran.code == 0, ran.err
    assert "gate_sweep: 5 points on V_g[5]" in ran.out
    assert "every setpoint is within the station's limits" in plain.out


def test_station_check_takes_station_and_the_old_positional(tmp_path: Path) -> None:
    ran = cli("station", "check", "--station", str(STATION), "--sim", "--scenario", "rf_leak", "--seed", "2")
    assert ran.code == 0, ran.err
    assert f"station {STATION} on the simulated lab (scenario 'rf_leak', seed 2)" in ran.out
    assert "Connected to" not in ran.out + ran.err  # the console shows our lines only
    old = cli("station", "check", str(STATION), "--sim")
    assert old.code == 0, old.err
    assert old.err == ""  # the old form still works as it did
    assert old.out.splitlines()[0] == f"station {STATION} on the simulated lab (scenario 'clean', seed 0)"
    assert "path" not in leaf("station check").format_usage()  # only --station is shown


def test_queue_add_checks_the_station_and_list_shows_the_id_remove_takes(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    for settings in (["--set", "num=3"], ["--set", "num=4"]):
        ran = cli("queue", "add", "gate_sweep", *settings, "--station", str(STATION), "--data", data)
        assert ran.code == 0, ran.err
    cli("queue", "move", "2", "1", "--data", data)
    listed = cli("queue", "list", "--data", data)
    header, *rows = listed.out.splitlines()
    assert header.split()[0] == "item" and "pos" not in header
    assert [r.split()[0] for r in rows] == ["2", "1"]  # run order, each row's id
    assert "num=4" in rows[0]
    removed = cli("queue", "remove", rows[0].split()[0], "--data", data)
    assert removed.code == 0 and "removed item 2" in removed.out
    assert [r.split()[:2] for r in cli("queue", "list", "--data", data).out.splitlines()[1:]] == [
        ["1", "gate_sweep"]
    ]


# -- a run: quiet console, Ctrl-C says where the instruments were left, resume where it goes on ------
def test_ctrl_c_says_where_the_instruments_were_left_and_resume_where_it_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_sweep.py").write_text(MY_PROC)
    data = tmp_path / "data"
    with ctrl_c_at(20.0, monkeypatch) as fired:
        ran = cli(
            "run", str(tmp_path / "my_sweep.py"), "--sim", "--station", str(STATION), "--data", str(data)
        )
    assert "fired" in fired and ran.code == 130, ran.err
    left = "instruments left: gate 0 V, magnet 0 T (driven), heater off, RF off"
    assert left in ran.err
    assert "Connected to" not in ran.out + ran.err and "Warning" not in ran.err
    (record,) = Catalog(data).runs()
    log = Path(record.path or "").with_suffix(".log").read_text()
    assert left in log
    assert log.count("Connected to: ") == 5  # the connection lines are kept, in the run log
    with xr.open_zarr(record.path) as ds:
        m = int(ds["t"].notnull().sum())
    resumed = cli("resume", record.run_id, "--data", str(data))
    assert resumed.code == 0, resumed.err
    assert f"resuming run {record.run_id} at point {m + 1}/9" in resumed.err
    assert (
        f"resuming run {record.run_id} at point {m + 1}/9"
        in Path(record.path or "").with_suffix(".log").read_text()
    )
    fridge = re.search(
        # (on the simulated lab the resumed run is its own estimate: no "(estimated ...)" beside it)
        r"fridge time (\d+):(\d\d):(\d\d)(?: \(estimated [\d:]+\))?, (\d+):(\d\d):(\d\d) of it since resuming"
        rf" at point {m + 1},",
        resumed.out,
    )
    assert fridge, resumed.out
    whole = 3600 * int(fridge[1]) + 60 * int(fridge[2]) + int(fridge[3])
    part = 3600 * int(fridge[4]) + 60 * int(fridge[5]) + int(fridge[6])
    with xr.open_zarr(record.path) as ds:
        assert abs(whole - sum(json.loads(ds.attrs["phases"]).values())) <= 1
        assert whole >= float(ds["t"].max()) - 1
    assert 0 < part < whole


def test_resume_takes_sim_scenario_and_seed_else_the_catalogs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "my_sweep.py").write_text(MY_PROC)
    data = tmp_path / "data"
    with ctrl_c_at(20.0, monkeypatch):
        cli("run", str(tmp_path / "my_sweep.py"), "--sim", "--seed", "5", "--station", str(STATION),
            "--data", str(data), "--no-progress")  # fmt: skip
    (record,) = Catalog(data).runs()
    bad = cli("resume", record.run_id, "--no-sim", "--scenario", "clean", "--data", str(data))
    assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1 and "--sim" in bad.err
    ran = cli("resume", record.run_id, "--scenario", "rf_leak", "--data", str(data), "--no-progress")
    assert ran.code == 0, ran.err
    with xr.open_zarr(record.path) as ds:
        sims = json.loads(ds.attrs["sim"])
    assert sims == {"scenario": "clean", "seed": 5}  # the store keeps the lab it started on
    log = Path(record.path or "").with_suffix(".log").read_text()
    assert "resuming run" in log


# -- the progress line on a terminal -----------------------------------------------------------------
def screen(raw: str) -> list[str]:
    """What a terminal shows for ``raw``: carriage returns overwrite, newlines end a line."""
    lines, line, col = [], [], 0
    for ch in raw:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


def pty_run(argv: list[str], columns: int = 160) -> str:
    """``qbs-lab ARGV`` on a pseudo-terminal ``columns`` wide: everything it wrote there."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # the terminal's size
    proc = subprocess.Popen([*CLI, *argv], stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env)
    os.close(slave)
    raw = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    assert proc.wait(timeout=60) == 0, raw.decode(errors="replace")[-2000:]
    os.close(master)
    return raw.decode().replace("\r\n", "\n")  # the terminal's own newline translation


def test_the_progress_line_leaves_no_text_behind_on_a_terminal(tmp_path: Path) -> None:
    """A run on a pseudo-terminal: every line the screen ends up with is whole. The line shrinks at
    the end ("time left" goes), so a redraw that did not clear would leave text behind."""
    argv = ["run", "gate_sweep", "--sim", "--station", str(STATION), "--data", str(tmp_path / "d")]
    text = pty_run([*argv, "--set", "num=31"])
    # redrawn in place (at least the first and the last draw; how many between depends on wall time)
    assert text.count("\r") >= 2
    shown = screen(text)
    progress = [s for s in shown if s.startswith("run 1 [")]
    assert len(progress) == 1, shown  # one line, redrawn
    assert re.fullmatch(r"run 1 \[#{24}\] 31/31 points 100%  \d+:\d\d:\d\d elapsed", progress[0])
    assert not [s for s in shown if "Connected to" in s or "Warning" in s]
    # narrower than the line: cut to the terminal's width, so that a redraw still lands in place
    narrow = screen(pty_run([*argv, "--set", "num=11"], columns=50))
    (line,) = [s for s in narrow if s.startswith("run 2 [")]
    assert len(line) == 49 and line.startswith("run 2 [########################] 11/11 points")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_message_above_the_progress_line_clears_it_and_the_line_is_drawn_again() -> None:
    from qbs_lab.progress import Progress

    out = Tty()
    bar = Progress(4, out=out, label="run 7 ")
    bar(0, (0,), [10.0])
    bar(1, (1,), [20.0])
    bar.message("crossing: short")
    bar(2, (2,), [30.0])
    bar(3, (3,), [40.0])
    bar.finish()
    shown = screen(out.getvalue())
    assert shown[0] == "crossing: short"  # whole: the longer progress line under it was cleared
    assert re.fullmatch(r"run 7 \[#{24}\] 4/4 points 100%  0:00:40 elapsed", shown[1]), shown
    assert len(shown) == 2


# -- fault schedules over a queue --------------------------------------------------------------------
def test_queue_fault_times_count_from_the_queues_start_and_the_unfired_are_warned(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    for _ in range(2):
        ran = cli("queue", "add", "gate_sweep", "--set", "num=5", "--station", str(STATION), "--data", data)
        assert ran.code == 0, ran.err
    est = cli("estimate", "gate_sweep", "--set", "num=5", "--station", str(STATION))
    h, m, s = re.search(r"estimated fridge time (\d+):(\d\d):(\d\d)", est.out).groups()  # type: ignore[union-attr]
    item = 3600 * int(h) + 60 * int(m) + int(s)
    faults = tmp_path / "faults.yaml"
    faults.write_text(
        "faults:\n"
        f"  - {{kind: leak_spike, instrument: gate, at_time: {1.5 * item:.0f}, duration: 5,"
        " current: 1.0e-11}\n"
        "  - {kind: quench, at_time: 1000000}\n"
    )
    run = ["queue", "run", "--sim", "--faults", str(faults), "--station", str(STATION), "--data", data]
    ran = cli(*run, "--no-progress")
    assert ran.code == 0, ran.err
    assert "faults: 1 of 2 fired (times from the queue's start)" in ran.out
    fired = re.search(r"fired in run (\d+) at t = (\d+) s: leak_spike on gate", ran.out)
    assert fired, ran.out
    assert fired[1] == "2"  # the item running at that time, the second
    assert abs(int(fired[2]) - 1.5 * item) <= 0.05 * item  # at the scheduled queue time
    warnings = [line for line in ran.err.splitlines() if "warning" in line]
    assert any("fault never fired: quench on magnet at t = 1e+06 s" in w for w in warnings), ran.err
    assert not any("leak_spike" in w for w in warnings)
    # counted from each run's start, the same schedule fires nothing: no item lasts 1.5 items
    cli("queue", "clear", "--data", data)
    for _ in range(2):
        cli("queue", "add", "gate_sweep", "--set", "num=5", "--station", str(STATION), "--data", data)
    ran = cli(*run, "--fault-times", "run", "--no-progress")
    assert ran.code == 0, ran.err
    assert "faults: 0 of 2 fired (times from its run's start)" in ran.out
    assert ran.err.count("fault never fired") == 2


# -- notation --------------------------------------------------------------------------------------------
def test_rf_sensitivity_summary_says_off_and_has_no_stray_units(tmp_path: Path) -> None:
    ran = cli(
        "run", "rf_sensitivity", "--sim", "--station", str(STATION), "--data", str(tmp_path),
        "--no-progress", "--set", "fields=0.011", "--set", "repeats=2", "--set", "powers=-30",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    summary = re.search(r"^\s+(\d+)/\1 points; (.*)$", ran.out, re.M)
    assert summary, ran.out
    assert "P_rf off, -30 dBm" in summary[2]
    assert "repeat 0 to 1," in summary[2] or "repeat 0 to 1" == summary[2].split(", ")[-1]
    assert " ," not in summary[2] and "-200" not in ran.out


def test_the_readme_lists_every_built_in_procedure() -> None:
    from qbs_lab.procedure import list_procedures

    for name in list_procedures():
        assert re.search(rf"^\| `{name}` \|", README, re.M), name


def test_one_notation_for_z_nu_and_plus_minus_in_what_we_print() -> None:
    """No output string (an f-string) in the package writes z*nu or +- (we write z·ν and ±)."""
    bad = re.compile(r"""\bf(["'])[^"'\n]*(z\*nu|z\*ν|\+- |\+/-)""")
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in (ROOT / "qbs_lab").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if bad.search(line)
    ]
    assert found == []
    assert bad.search('f" +- {err:.2g}"') and bad.search("f'z*nu = {x}'")  # the check can fail


# -- the README's Python snippets ---------------------------------------------------------------------
@pytest.mark.parametrize("n", range(len(re.findall(r"```python\n", README))))
def test_the_readme_python_snippets_run_without_warnings(n: int, tmp_path: Path) -> None:
    """Each snippet as a user pastes it, in a directory with the station file, warnings on."""
    snippet = re.findall(r"```python\n(.*?)```", README, re.S)[n]
    (tmp_path / "station.yaml").write_text(STATION.read_text())
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", snippet], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr and "warning" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_an_unreachable_instrument_is_one_line_and_its_traceback_goes_to_the_run_log(tmp_path: Path) -> None:
    """Without --sim the reference station's GPIB instruments cannot be reached here: QCoDeS logs a
    traceback, which goes to the run log; the console has our one line."""
    data = tmp_path / "data"
    argv = ["run", "field_sweep", "--set", "num=3", "--station", str(STATION), "--data", str(data)]
    proc = subprocess.run([*CLI, *argv, "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbs-lab: error: ") and "cannot reach" in lines[0]
    assert proc.stdout == ""
    (record,) = Catalog(data).runs()
    assert record.state == "aborted"
    log = Path(record.path or "").with_suffix(".log").read_text()
    assert "Traceback" in log and "Could not connect" in log
    assert f"run {record.run_id} aborted: " in log


def test_where_the_instruments_were_left_follows_the_safe_state_policy_and_the_failures() -> None:
    from types import SimpleNamespace

    from qbs_lab.actuators import describe_parked
    from qbs_lab.station import SafeState

    def station(has_rf: bool = True, **policy: str) -> object:
        config = SimpleNamespace(safe_state=SafeState(**policy), gate=SimpleNamespace(safe_value=0.0))
        return SimpleNamespace(config=config, rf=object() if has_rf else None)

    assert describe_parked(station(), True, []) == "gate 0 V, magnet 0 T (driven), heater off, RF off"  # type: ignore[arg-type]
    assert describe_parked(station(), False, []).endswith("heater on at its setpoint, RF off")  # type: ignore[arg-type]
    persistent = describe_parked(station(magnet="persistent", rf="hold"), True, [])  # type: ignore[arg-type]
    assert persistent == (
        "gate 0 V, magnet persistent at its field (supply at 0 A), heater off, RF held as it was"
    )
    failed = describe_parked(station(has_rf=False), True, ["magnet to 0 T: QuenchError: quench"])  # type: ignore[arg-type]
    assert failed == "gate 0 V, magnet NOT parked (magnet to 0 T: QuenchError: quench), heater off"

"""The qbs-lab command: sim serve over TCP, and clear errors for broken station files."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pyvisa

ROOT = Path(__file__).resolve().parent.parent
STATION = ROOT / "station.yaml"
CLI = [sys.executable, "-m", "qbs_lab.cli"]
STATION_TEXT = STATION.read_text()


def test_sim_serve_prints_addresses_that_answer() -> None:
    proc = subprocess.Popen(
        [*CLI, "sim", "serve", "--station", str(STATION)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        socket_re = r"^\s+(\w+)\s+(TCPIP0::127\.0\.0\.1::\d+::SOCKET)"
        hislip_re = r"^\s+(\w+)\s+\S+\s+(TCPIP0::127\.0\.0\.1::hislip0,\d+::INSTR)"
        sockets = dict(re.findall(socket_re, text, re.M))
        hislip = dict(re.findall(hislip_re, text, re.M))
        assert set(sockets) == set(hislip) == {"lockin", "gate", "magnet", "fridge", "rf"}
        rm = pyvisa.ResourceManager("@py")
        fridge = rm.open_resource(
            sockets["fridge"], read_termination="\r\n", write_termination="\n", timeout=10000
        )
        assert "372" in fridge.query("*IDN?")
        assert 0.005 < float(fridge.query("KRDG? 6")) < 0.05  # base temperature, K
        fridge.close()
        lockin = rm.open_resource(hislip["lockin"], timeout=10000)  # HiSLIP marks END: no termination
        assert lockin.query("*IDN?").startswith("Stanford_Research_Systems,SR830")
        lockin.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read the station file"),
        ("instruments: [unclosed", "not valid YAML"),
        ("roles: {}\n", "instruments: is missing or empty"),
        (
            "instruments:\n  lockin:\n    type: qcodes.instrument_drivers.stanford_research.SR830\n",
            "instruments.lockin.address is missing",
        ),
        (
            "instruments:\n  rf:\n    type: x.RohdeSchwarzSGS100A\n    address: not-a-visa-name\n",
            "instruments.rf.address",
        ),
        (
            "instruments:\n  rf:\n    type: x.RohdeSchwarzSGS100A\n    address: GPIB0::1::INSTR\n"
            "sim:\n  sample: {nonsense: 1}\n",
            "sim:",
        ),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("instruments: {lockin: GPIB0::8::INSTR}\n", "instruments.lockin must be a mapping"),
        (STATION_TEXT.replace("sim:\n  scenario: clean", "sim: clean"), "sim: must be a mapping"),
        (STATION_TEXT + "roles: [a]\n", "key 'roles' is given twice"),  # not the last one winning
        (STATION_TEXT.replace("mixing_chamber: 6", "mixing_chamber: MC"), "roles.thermometry.mixing_chamber"),
        (STATION_TEXT.replace("sample: 8", "sample: 6"), "the mixing chamber's too"),
        (STATION_TEXT.replace("excitation: 0.01", "excitation: 10 mV"), "measurement.excitation must be"),
        (STATION_TEXT.replace("bias_resistor: 10.0e6", "bias_resistor: 0"), "measurement.bias_resistor"),
        (STATION_TEXT.replace("scenario: clean", "scenario: dirty"), "sim.scenario 'dirty'"),
    ],
)
def test_broken_station_files_end_in_one_clear_message(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "station.yaml"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run([*CLI, "demo", "--station", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0]
    assert expected in lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["demo", "--seed", "-1"], "--seed"), (["sim", "serve", "--port-base", "70000"], "--port-base")],
)
def test_bad_options_end_in_a_usage_message(args: list[str], expected: str) -> None:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and expected in proc.stderr


def test_a_second_lab_with_its_own_virtual_clock_is_refused_clearly() -> None:
    from qbs_lab.sim import SimLab, SimLabError

    with SimLab.from_station(STATION) as first:
        with pytest.raises(SimLabError, match="another simulated lab"):
            SimLab.from_station(STATION)
        with SimLab.from_station(STATION, clock=first.clock, seed=2) as second:  # sharing is fine
            assert second.clock is first.clock
    with SimLab.from_station(STATION):  # and after closing, a new one opens
        pass

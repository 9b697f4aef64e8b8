"""The README's main command: the simulated-lab tour prints live readings and leaves the lab safe."""

import io
import itertools

import pytest
from conftest import STATION

from qbs_lab.sim import SimLab
from qbs_lab.sim.demo import run_demo
from qbs_lab.sim.magnet import MagnetState


def test_demo_finds_the_crossing_and_leaves_the_lab_safe() -> None:
    out = io.StringIO()
    with SimLab.from_station(STATION, seed=4) as lab:
        result = run_demo(lab, out=out)
        state = lab.state
        state.sync()
        # safe state, from the physical state of the emulated instruments
        assert state.gate.output_voltage() == 0.0
        assert state.magnet.magnet_field() == 0.0 and state.magnet.state == MagnetState.HOLDING
        assert state.fridge.heater_power() == 0.0
        # the gate went up and down in steps of at most 0.5 V (from the Keithley's command log)
        levels = [
            float(c.args[0])
            for c in lab.command_log("gate")
            if c.reply is None
            and c.header.upper().lstrip(":").startswith("SOUR")
            and "VOLT" in c.header.upper()
            and c.args
        ]
        assert max(levels) == pytest.approx(15.0)
        assert max(abs(b - a) for a, b in itertools.pairwise(levels)) <= 0.5 + 1e-9
    text = out.getvalue()
    assert "T_mc [mK]" in text and "B [mT]" in text and "R [kOhm]" in text
    assert len([line for line in text.splitlines() if line.strip().startswith("0:")]) == 27
    assert result["B_cross"] == pytest.approx(result["B_c"], rel=2e-3)
    assert result["R_cross"] == pytest.approx(result["R_c"], rel=5e-3)

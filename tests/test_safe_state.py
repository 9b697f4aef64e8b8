"""The station's safe-state policy applied by park: the magnet left persistent, or held."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qbs_lab.actuators import park
from qbs_lab.sim.lab import SimLab
from qbs_lab.station import SafeState, load_station

STATION = Path(__file__).resolve().parents[1] / "station.yaml"


@pytest.mark.parametrize("switch", [True, False])
def test_magnet_left_persistent_keeps_its_field_with_the_supply_at_zero(switch: bool) -> None:
    config = dataclasses.replace(load_station(STATION), safe_state=SafeState(magnet="persistent"))
    with SimLab.from_station(STATION, seed=1) as lab:
        lab.state.magnet.switch_installed = switch
        station = config.connect(lab=lab)
        try:
            if switch:  # the coil follows the supply only with the switch heater on
                station.drivers["magnet"].switch_heater.state(True)
            station.magnet.ramp_to(0.02)
            failures = park(station, fault=True)
            magnet = lab.state.magnet
            commands = [c.command.upper() for c in lab.command_log("magnet")]
            if switch:
                assert failures == []
                assert magnet.persistent()
                assert magnet.magnet_field() == pytest.approx(0.02, abs=1e-6)  # the coil keeps it
                assert magnet.current() == pytest.approx(0.0, abs=1e-9)  # the supply is at zero
                assert commands.index("PS 0") < commands.index("ZERO")  # switch cold before zeroing
                assert abs(station.magnet.field() - 0.02) < 1e-6
            else:  # no switch: nothing is sent that would drop the field; said in the park failures
                assert failures and "no persistent switch" in failures[0]
                assert "ZERO" not in commands and "PS 0" not in commands
                assert magnet.magnet_field() == pytest.approx(0.02, abs=1e-6)
            assert lab.state.gate.output_voltage() == 0.0  # the gate parked all the same
        finally:
            station.close()


def test_station_file_accepts_persistent_and_refuses_other_words(tmp_path: Path) -> None:
    text = STATION.read_text().replace("magnet: zero ", "magnet: persistent ")
    good = tmp_path / "good.yaml"
    good.write_text(text)
    assert load_station(good).safe_state.magnet == "persistent"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("magnet: persistent ", "magnet: frozen "))
    with pytest.raises(Exception, match=r"safe_state.magnet: must be one of zero, hold, persistent"):
        load_station(bad)

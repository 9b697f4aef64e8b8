"""The Yokogawa GS200 adapter on the unmodified QCoDeS driver, against pyvisa-sim.

QCoDeS's own ``Yokogawa_GS200.yaml`` answers only ``*IDN?``, ``:SOUR:FUNC?`` and ``OUTPUT?`` (any other
command gets "ERROR"), so it tests what it can: connecting, the source mode, the output, the NaN
leakage and the refused limit. The rest (level, range, current protection) runs on the same file
extended with those commands as the GS200 manual gives them (:SOURce:LEVel, :SOURce:RANGe,
:SOURce:PROTection:CURRent), written to a temporary directory and loaded as ``<file>@sim``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import qcodes
import yaml
from qbs_lab.drivers.adapters import adapter_for
from qbs_lab.drivers.adapters.qcodes_gs200 import QcodesGS200
from qbs_lab.drivers.errors import LimitError
from qbs_lab.drivers.protocols import GateSourceAdapter
from qbs_lab.drivers.roles import GateLimits, GateRole
from qcodes.instrument_drivers.yokogawa import YokogawaGS200, YokogawaGS200Exception

from qbs_lab.clock import VirtualClock

DRIVER = "qcodes.instrument_drivers.yokogawa.YokogawaGS200"
SIM_FILE = Path(qcodes.__file__).parent / "instrument" / "sims" / "Yokogawa_GS200.yaml"


def _spy(
    drv: Any, monkeypatch: pytest.MonkeyPatch, clock: VirtualClock | None = None
) -> list[tuple[float, str]]:
    """Record (time, command) of every write the driver makes, then let it through."""
    sent: list[tuple[float, str]] = []
    write_raw = drv.write_raw

    def spy(cmd: str) -> None:
        sent.append((clock.now() if clock else 0.0, cmd))
        write_raw(cmd)

    monkeypatch.setattr(drv, "write_raw", spy)
    return sent


# -- QCoDeS's pyvisa-sim file, as it is --------------------------------------------------------------
@pytest.fixture
def gs() -> Iterator[Any]:
    drv = YokogawaGS200("gs200", "GPIB::1::INSTR", pyvisa_sim_file="Yokogawa_GS200.yaml")
    try:
        yield drv
    finally:
        drv.close()


def test_adapter_is_registered_and_implements_the_protocol(gs: Any) -> None:
    role, cls = adapter_for(DRIVER)  # type: ignore[misc]
    assert (role, cls) == ("gate", QcodesGS200)
    assert isinstance(QcodesGS200(gs), GateSourceAdapter)


def test_output_and_nan_leakage(gs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _spy(gs, monkeypatch)
    adapter = QcodesGS200(gs)
    assert sent == []  # already sourcing voltage: the mode is left alone
    assert adapter.output() is False
    adapter.set_output(True)
    assert adapter.output() is True and gs.ask("OUTPUT?") == "1"
    assert math.isnan(adapter.leakage_current())  # the GS200 does not measure its current
    adapter.set_output(False)
    assert adapter.output() is False and gs.ask("OUTPUT?") == "0"
    assert [cmd for _, cmd in sent] == ["OUTPUT 1", "OUTPUT 0"]


def test_adapter_switches_a_current_source_to_voltage(gs: Any) -> None:
    gs.source_mode("CURR")
    assert gs.ask(":SOUR:FUNC?") == "CURR"
    QcodesGS200(gs)
    assert gs.ask(":SOUR:FUNC?") == "VOLT" and gs.source_mode() == "VOLT"


def test_mode_cannot_change_with_the_output_on(gs: Any) -> None:
    gs.source_mode("CURR")
    gs.output("on")
    with pytest.raises(YokogawaGS200Exception, match="Cannot switch mode while source is on"):
        QcodesGS200(gs)
    assert gs.ask(":SOUR:FUNC?") == "CURR"


def test_a_limit_below_one_milliamp_is_refused_before_anything_is_sent(
    gs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = QcodesGS200(gs)
    sent = _spy(gs, monkeypatch)
    with pytest.raises(LimitError, match="below the Yokogawa GS200's smallest current protection"):
        adapter.set_current_limit(1e-7)
    with pytest.raises(LimitError):  # so a gate role with the default 100 nA compliance cannot start
        GateRole(adapter, GateLimits(-1.0, 1.0, 0.1, 1.0, 1e-9), VirtualClock())
    assert sent == []


# -- the same file, extended with the commands the adapter sends (GS200 manual) -----------------------
def _extended_sim_file(directory: Path) -> Path:
    doc = yaml.safe_load(SIM_FILE.read_text())
    props = next(iter(doc["devices"].values()))["properties"]
    props["level"] = {
        "default": 0.0,
        "getter": {"q": ":SOUR:LEV?", "r": "{:+.5E}"},
        "setter": {"q": ":SOUR:LEV {}"},
        "specs": {"type": "float", "min": -32.0, "max": 32.0},
    }
    props["range"] = {
        "default": 10.0,
        "getter": {"q": ":SOUR:RANG?", "r": "{:+.0E}"},
        "setter": {"q": ":SOUR:RANG {}"},
        "specs": {"type": "float", "valid": [10e-3, 100e-3, 1.0, 10.0, 30.0]},
    }
    props["current_protection"] = {
        "default": 0.1,
        "getter": {"q": ":SOUR:PROT:CURR?", "r": "{:+.3E}"},
        "setter": {"q": ":SOUR:PROT:CURR {}"},
        "specs": {"type": "float", "min": 1e-3, "max": 0.2},
    }
    path = directory / "Yokogawa_GS200_extended.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def gsx(tmp_path: Path) -> Iterator[Any]:
    drv = YokogawaGS200("gs200x", "GPIB::1::INSTR", visalib=f"{_extended_sim_file(tmp_path)}@sim")
    try:
        yield drv
    finally:
        drv.close()


def test_level_and_current_protection(gsx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = QcodesGS200(gsx)
    sent = _spy(gsx, monkeypatch)
    adapter.set_voltage(2.5)
    assert adapter.voltage() == 2.5 and gsx.ask(":SOUR:LEV?") == "+2.50000E+00"
    adapter.set_current_limit(2.7e-3)  # rounded down to the 1 mA step: never looser than asked
    assert float(gsx.ask(":SOUR:PROT:CURR?")) == 2e-3
    adapter.set_current_limit(0.5)  # capped at the GS200's 200 mA
    assert float(gsx.ask(":SOUR:PROT:CURR?")) == 0.2
    adapter.set_current_limit(1e-3)
    assert float(gsx.ask(":SOUR:PROT:CURR?")) == 1e-3
    assert [cmd for _, cmd in sent] == [
        ":SOUR:LEV 2.50000e+00",
        ":SOUR:PROT:CURR 0.002",
        ":SOUR:PROT:CURR 0.200",
        ":SOUR:PROT:CURR 0.001",
    ]


def test_a_level_beyond_the_range_is_refused_by_the_driver(gsx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = QcodesGS200(gsx)
    adapter.set_voltage(1.0)
    sent = _spy(gsx, monkeypatch)
    with pytest.raises(ValueError, match="not in range"):
        adapter.set_voltage(12.0)  # the 10 V range
    assert sent == [] and adapter.voltage() == 1.0


def test_role_ramps_within_the_limits_and_nan_never_trips(gsx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    limits = GateLimits(-8.0, 8.0, max_step=0.5, max_rate=2.0, leakage_limit=1e-15, current_limit=1e-3)
    sent = _spy(gsx, monkeypatch, clock)
    role = GateRole(QcodesGS200(gsx), limits, clock)
    role.ramp_to(4.0)  # a 1 fA leakage limit: any finite reading would trip it
    role.ramp_to(-2.75)
    role.to_safe_value()
    assert math.isnan(role.leakage())
    assert sent[0][1] == ":SOUR:PROT:CURR 0.001"  # the compliance comes first
    levels = [(t, float(cmd.split()[1])) for t, cmd in sent if cmd.startswith(":SOUR:LEV ")]
    assert [v for _, v in levels][-1] == 0.0 and max(v for _, v in levels) == 4.0
    assert min(v for _, v in levels) == -2.75
    for (t0, v0), (t1, v1) in itertools.pairwise(levels):
        # the driver sends 6 significant digits (":SOUR:LEV {:.5e}"): allow that rounding, no more
        rounding = 1e-5 * max(abs(v0), abs(v1))
        assert abs(v1 - v0) <= limits.max_step + rounding
        assert t1 - t0 >= (abs(v1 - v0) - rounding) / limits.max_rate - 1e-12
    n = len(sent)
    with pytest.raises(LimitError):
        role.ramp_to(8.5)
    assert len(sent) == n and gsx.output() == "on"

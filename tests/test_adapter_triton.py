"""The Oxford Triton: its emulator, the unmodified QCoDeS driver on it, the adapter and ThermometryRole.

The QCoDeS OxfordTriton is an IPInstrument (a raw socket, no VISA), so it reaches the simulated lab
through ``SimLab.serve_tcp()``; the station entry needs a VISA-style address only for SimLab.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qbs_lab.drivers.adapters import adapter_for
from qbs_lab.drivers.adapters.qcodes_triton import QcodesTriton
from qbs_lab.drivers.errors import LimitError
from qbs_lab.drivers.protocols import ThermometryAdapter
from qbs_lab.drivers.roles import ThermometryLimits, ThermometryRole
from qcodes.instrument_drivers.oxford import OxfordTriton

from qbs_lab.clock import VirtualClock
from qbs_lab.sim import SimLab
from qbs_lab.sim.emulators.triton import TritonEmulator
from qbs_lab.sim.lab_state import LabState

INSTRUMENTS = {
    "fridge": {
        "type": "qcodes.instrument_drivers.oxford.OxfordTriton",
        "address": "TCPIP0::127.0.0.1::33576::SOCKET",
    }
}
MC, SAMPLE = 6, 8


# -- the emulator on its own ------------------------------------------------------------------------
@pytest.fixture
def emu() -> TritonEmulator:
    lab = LabState.create(clock=VirtualClock(), scenario="clean", seed=0)
    return TritonEmulator("fridge", lab, np.random.default_rng(0))


def test_reply_formats(emu: TritonEmulator) -> None:
    T = emu.lab.fridge.temperature(6)
    reply = emu.handle("READ:DEV:T6:TEMP:SIG:TEMP")
    assert reply is not None and reply.startswith("STAT:DEV:T6:TEMP:SIG:TEMP:") and reply.endswith("K")
    assert float(reply.rsplit(":", 1)[1][:-1]) == pytest.approx(T, rel=0.01)
    assert "e" not in reply.rsplit(":", 1)[1]  # positional: the driver's regex reads no exponent
    assert emu.handle("*IDN?") == "IDN:OXFORD INSTRUMENTS:TRITON:SIM0001:2.4.3"
    assert emu.handle("READ:SYS:TIME") == "STAT:SYS:TIME:12:00:00"
    emu.lab.clock.sleep(3725)
    assert emu.handle("READ:SYS:TIME") == "STAT:SYS:TIME:13:02:05"
    assert emu.handle("READ:SYS:DR:CHAN:MC") == "STAT:SYS:DR:CHAN:MC:T6"
    assert emu.handle("READ:SYS:DR:CHAN:COOL") == "STAT:SYS:DR:CHAN:COOL:NONE"
    assert emu.handle("READ:DEV:T6:TEMP:LOOP:HTR") == "STAT:DEV:T6:TEMP:LOOP:HTR:H1"
    assert emu.handle("READ:DEV:T5:TEMP:LOOP:HTR") == "STAT:DEV:T5:TEMP:LOOP:HTR:NONE"
    assert emu.handle("READ:DEV:T6:TEMP:LOOP:RANGE") == "STAT:DEV:T6:TEMP:LOOP:RANGE:1.000mA"
    assert emu.handle("READ:DEV:P2:PRES:SIG:PRES") == "STAT:DEV:P2:PRES:SIG:PRES:452mB"
    assert emu.handle("READ:DEV:H1:HTR:SIG:POWR") == "STAT:DEV:H1:HTR:SIG:POWR:0.0000uW"
    assert emu.handle("SET:DEV:T6:TEMP:LOOP:TSET:0.1") == "STAT:SET:DEV:T6:TEMP:LOOP:TSET:0.1:VALID"
    assert emu.handle("READ:DEV:T6:TEMP:LOOP:TSET") == "STAT:DEV:T6:TEMP:LOOP:TSET:0.1K"
    assert emu.handle("") is None  # the driver's magnet writes end with an extra CR LF


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("READ:DEV:T17:TEMP:SIG:TEMP", "STAT:DEV:T17:TEMP:SIG:TEMP:NOT_FOUND"),
        ("READ:DEV:H2:HTR:SIG:POWR", "STAT:DEV:H2:HTR:SIG:POWR:NOT_FOUND"),
        ("SET:DEV:T0:TEMP:LOOP:MODE:ON", "STAT:SET:DEV:T0:TEMP:LOOP:MODE:ON:NOT_FOUND"),
        ("READ:DEV:T6:TEMP:FOO", "STAT:DEV:T6:TEMP:FOO:INVALID"),
        ("read:dev:t6:temp:sig:temp", "read:dev:t6:temp:sig:temp:INVALID"),  # case-sensitive
        ("SET:DEV:T6:TEMP:SIG:TEMP:4.2", "STAT:SET:DEV:T6:TEMP:SIG:TEMP:4.2:INVALID"),  # read only
        ("SET:DEV:T6:TEMP:LOOP:TSET:abc", "STAT:SET:DEV:T6:TEMP:LOOP:TSET:abc:INVALID"),
        ("SET:DEV:T6:TEMP:LOOP:TSET:-1", "STAT:SET:DEV:T6:TEMP:LOOP:TSET:-1:INVALID"),
        ("SET:DEV:T6:TEMP:LOOP:RANGE:5", "STAT:SET:DEV:T6:TEMP:LOOP:RANGE:5:INVALID"),  # not a range
        ("SET:DEV:T6:TEMP:LOOP:MODE:YES", "STAT:SET:DEV:T6:TEMP:LOOP:MODE:YES:INVALID"),
        ("READ:SYS:VRM:ACTN", "STAT:SYS:VRM:ACTN:INVALID"),  # no magnet run by this Triton
        ("*RST", "*RST:INVALID"),
    ],
)
def test_errors_are_in_the_reply_and_change_nothing(emu: TritonEmulator, command: str, reply: str) -> None:
    fridge = emu.lab.fridge
    before = (fridge.setpoint, fridge.heater_mode, fridge.heater_range, emu.loops[6])
    assert emu.handle(command) == reply
    assert emu.log[-1].error == reply.rsplit(":", 1)[1]
    assert (fridge.setpoint, fridge.heater_mode, fridge.heater_range, emu.loops[6]) == before


def test_the_h1_loop_is_the_fridges_heater(emu: TritonEmulator) -> None:
    fridge = emu.lab.fridge
    for cmd in ("TSET:0.2", "P:20", "I:2", "D:0.5", "RANGE:3.16", "MODE:ON"):
        assert emu.handle(f"SET:DEV:T6:TEMP:LOOP:{cmd}").endswith(":VALID")
    assert (fridge.heater_mode, fridge.heater_range, fridge.setpoint) == ("closed_loop", 5, 0.2)
    assert fridge.pid == (20.0, 120.0, 30.0)  # I and D in minutes on the Triton, seconds in the model
    emu.handle("SET:DEV:T5:TEMP:LOOP:TSET:0.7")  # a loop without the heater acts on nothing
    assert fridge.setpoint == 0.2 and fridge.control_channel == 6
    emu.handle("SET:DEV:T5:TEMP:LOOP:HTR:H1")  # the heater moves to T5's loop, which is off
    assert emu.handle("READ:DEV:T6:TEMP:LOOP:HTR").endswith(":NONE")
    assert (fridge.control_channel, fridge.setpoint) == (5, 0.7)
    assert fridge.heater_mode != "closed_loop"


def test_a_loop_switched_off_leaves_the_heater_at_its_power(emu: TritonEmulator) -> None:
    fridge = emu.lab.fridge
    for cmd in ("TSET:0.3", "RANGE:1", "MODE:ON"):
        emu.handle(f"SET:DEV:T6:TEMP:LOOP:{cmd}")
    emu.lab.clock.sleep(30)
    emu.handle("READ:DEV:T6:TEMP:SIG:TEMP")
    powered = fridge.heater_power()
    assert powered > 0
    emu.handle("SET:DEV:T6:TEMP:LOOP:MODE:OFF")
    assert emu.handle("READ:DEV:T6:TEMP:LOOP:MODE").endswith(":OFF")
    assert fridge.heater_mode == "open_loop" and fridge.heater_power() == pytest.approx(powered, rel=1e-9)
    emu.handle("SET:DEV:H1:HTR:SIG:POWR:0")
    assert fridge.heater_mode == "off" and fridge.heater_power() == 0.0


def test_setpoint_ramp(emu: TritonEmulator) -> None:
    fridge = emu.lab.fridge
    for cmd in ("RAMP:RATE:0.6", "RAMP:ENAB:ON", "TSET:0.5"):
        emu.handle(f"SET:DEV:T6:TEMP:LOOP:{cmd}")
    emu.lab.clock.sleep(10)
    emu.lab.sync()
    assert fridge.setpoint == pytest.approx(0.1, abs=1e-6)  # 0.6 K/min for 10 s
    assert emu.handle("READ:DEV:T6:TEMP:LOOP:TSET").endswith(":0.5K")  # the target


# -- the QCoDeS driver and the adapter on a SimLab -------------------------------------------------------
def _connect(lab: SimLab, name: str = "triton") -> OxfordTriton:
    lab.serve_tcp()
    port = int(lab.tcp_address("fridge", "socket").split("::")[2])
    return OxfordTriton(name, address="127.0.0.1", port=port, timeout=5)


@pytest.fixture
def rig() -> Iterator[tuple[SimLab, OxfordTriton]]:
    with SimLab(INSTRUMENTS, seed=0, thermometry={"mixing_chamber": MC, "sample": SAMPLE}) as lab:
        driver = _connect(lab)
        try:
            yield lab, driver
        finally:
            driver.close()


def _sets(lab: SimLab, since: int = 0) -> list[str]:
    return [c.command for c in lab.command_log("fridge")[since:] if c.command.startswith("SET:")]


def test_driver_snapshot_is_clean(rig: tuple[SimLab, OxfordTriton], caplog: pytest.LogCaptureFixture) -> None:
    lab, driver = rig
    with caplog.at_level(logging.WARNING):
        snap = driver.snapshot(update=True)
    assert "Could not update" not in caplog.text and "Ignored an error" not in caplog.text
    assert not [c for c in lab.command_log("fridge") if c.error and "VRM" not in c.command]
    params = snap["parameters"]
    assert driver.magnet_available is False
    assert driver.chan_alias == {"PT1": "T1", "PT2": "T2", "STIL": "T5", "MC": "T6"}
    assert params["action"]["value"] == "Circulating"  # NONE with the MC below 2 K
    assert params["MC"]["value"] == pytest.approx(lab.state.fridge.temperature(MC), rel=0.01)
    assert params["T3"]["value"] == 0.0 and params["T3_state"]["value"] == "off"  # no sensor
    assert params["turb1_state"]["value"] == "on" and params["turb1_speed"]["value"] == 820.0


def test_adapter_meets_the_protocol_and_finds_the_heaters_loop(rig: tuple[SimLab, OxfordTriton]) -> None:
    lab, driver = rig
    assert adapter_for("qcodes.instrument_drivers.oxford.OxfordTriton") == ("thermometry", QcodesTriton)
    adapter = QcodesTriton(driver)
    assert isinstance(adapter, ThermometryAdapter)
    assert adapter.channel == MC and driver.pid_control_channel() == MC  # the driver starts at 5
    assert adapter.heater_ranges == (0.0, 316e-6, 1e-3, 3.16e-3, 10e-3, 31.6e-3, 100e-3)
    fridge = lab.state.fridge
    for ch in (MC, SAMPLE, 1, 5):
        T = adapter.temperature(ch)
        assert type(T) is float and T == pytest.approx(fridge.temperature(ch), rel=0.01)
    assert adapter.temperature(3) == 0.0  # a channel with no sensor
    assert adapter.heater_range() == 0.0 and adapter.heater_output() == 0.0  # loop off at start
    with pytest.raises(ValueError, match="only heater H1"):
        QcodesTriton(driver, heater="sample_heater")


def test_adapter_regulates_the_mixing_chamber(rig: tuple[SimLab, OxfordTriton]) -> None:
    lab, driver = rig
    adapter, fridge = QcodesTriton(driver), lab.state.fridge
    adapter.set_heater_range(1e-3)
    adapter.set_setpoint(0.1)
    adapter.set_closed_loop(MC, (10.0, 1.0, 0.0))
    assert _sets(lab)[-1] == f"SET:DEV:T{MC}:TEMP:LOOP:MODE:ON"
    assert (fridge.heater_mode, fridge.heater_range, fridge.control_channel) == ("closed_loop", 4, MC)
    assert fridge.pid == (10.0, 60.0, 0.0)
    assert adapter.setpoint() == pytest.approx(0.1) and adapter.heater_range() == pytest.approx(1e-3)
    lab.clock.sleep(1800)
    assert adapter.temperature(MC) == pytest.approx(0.1, rel=0.03)
    out = adapter.heater_output()
    assert 0 < out < 100 and out == pytest.approx(fridge.heater_output(), rel=1e-3, abs=1e-3)


def test_heater_off_stays_off_until_a_range_is_set(rig: tuple[SimLab, OxfordTriton]) -> None:
    lab, driver = rig
    adapter, fridge = QcodesTriton(driver), lab.state.fridge
    adapter.set_heater_range(3.16e-3)
    adapter.set_setpoint(0.3)
    adapter.set_closed_loop(MC)
    lab.clock.sleep(120)
    assert fridge.heater_power() > 0
    adapter.set_heater_range(0.0)
    assert _sets(lab)[-2:] == [f"SET:DEV:T{MC}:TEMP:LOOP:MODE:OFF", "SET:DEV:H1:HTR:SIG:POWR:0"]
    assert fridge.heater_mode == "off" and fridge.heater_power() == 0.0
    assert adapter.heater_range() == 0.0 and adapter.heater_output() == 0.0
    mark = len(lab.command_log("fridge"))
    adapter.set_setpoint(0.2)
    adapter.set_closed_loop(MC)  # as the role does on every setpoint: the heater must stay off
    assert not [c for c in _sets(lab, mark) if c.endswith("MODE:ON")]
    assert fridge.heater_mode == "off"
    adapter.set_heater_range(1e-3)  # a range again: the loop asked for comes on
    assert (fridge.heater_mode, fridge.heater_range, fridge.setpoint) == ("closed_loop", 4, 0.2)


def test_moving_the_loop_carries_setpoint_and_range(rig: tuple[SimLab, OxfordTriton]) -> None:
    lab, driver = rig
    # stale settings on the sample channel's loop: 100 mA and 5 K must never drive the heater
    for cmd in ("RANGE:100", "TSET:5", "MODE:ON"):
        driver.write(f"SET:DEV:T{SAMPLE}:TEMP:LOOP:{cmd}")
    adapter, fridge = QcodesTriton(driver), lab.state.fridge
    adapter.set_heater_range(1e-3)
    adapter.set_setpoint(0.12)
    adapter.set_closed_loop(MC)
    mark = len(lab.command_log("fridge"))
    adapter.set_closed_loop(SAMPLE)
    sets = _sets(lab, mark)
    moved = sets.index(f"SET:DEV:T{SAMPLE}:TEMP:LOOP:HTR:H1")
    assert sets[moved + 1] == f"SET:DEV:T{SAMPLE}:TEMP:LOOP:MODE:OFF"  # its stale loop off at once
    assert (fridge.control_channel, fridge.heater_mode, fridge.heater_range) == (SAMPLE, "closed_loop", 4)
    assert fridge.setpoint == pytest.approx(0.12)
    assert adapter.setpoint() == pytest.approx(0.12) and adapter.heater_range() == pytest.approx(1e-3)


# -- ThermometryRole: its limits hold, proved from the command log ------------------------------------------
LIMITS = ThermometryLimits(max_temperature=1.5, max_heater_range=0.01)


def _loop_values(lab: SimLab, node: str) -> list[float]:
    pattern = re.compile(rf"SET:DEV:T\d+:TEMP:LOOP:{node}:([^:]+)")
    return [float(m.group(1)) for c in lab.command_log("fridge") if (m := pattern.fullmatch(c.command))]


def test_role_refuses_before_sending_and_regulates(rig: tuple[SimLab, OxfordTriton]) -> None:
    lab, driver = rig
    role = ThermometryRole(QcodesTriton(driver), LIMITS, mixing_chamber=MC, sample=SAMPLE, pid=(10, 1, 0))
    mark = len(lab.command_log("fridge"))
    for bad in (lambda: role.set_setpoint(2.0), lambda: role.set_setpoint(float("nan"))):
        with pytest.raises(LimitError, match="setpoint"):
            bad()
    with pytest.raises(LimitError, match="above the cap"):
        role.set_heater_range(31.6e-3)
    with pytest.raises(LimitError, match="not one of"):
        role.set_heater_range(5e-3)
    assert lab.command_log("fridge")[mark:] == []  # nothing was sent
    role.set_heater_range(10e-3)
    role.set_setpoint(0.5)
    lab.clock.sleep(1800)
    assert role.temperature_mc() == pytest.approx(0.5, rel=0.03)
    assert role.temperature_sample() == pytest.approx(lab.state.fridge.temperature(SAMPLE), rel=0.01)
    role.heater_off()
    assert lab.state.fridge.heater_power() == 0.0
    assert max(_loop_values(lab, "TSET")) <= LIMITS.max_temperature
    assert max(_loop_values(lab, "RANGE")) <= LIMITS.max_heater_range * 1e3  # mA on the Triton


_requests = st.lists(
    st.one_of(
        st.tuples(st.just("setpoint"), st.floats(-1.0, 5.0) | st.just(float("nan"))),
        st.tuples(st.just("range"), st.sampled_from([0.0, 316e-6, 1e-3, 3.16e-3, 5e-3, 10e-3, 31.6e-3, 0.1])),
        st.tuples(st.just("off"), st.just(0.0)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=_requests)
def test_random_requests_never_put_an_out_of_limit_value_on_the_triton(requests: list) -> None:
    with SimLab(INSTRUMENTS, seed=0, thermometry={"mixing_chamber": MC, "sample": SAMPLE}) as lab:
        driver = _connect(lab, "triton_h")
        try:
            role = ThermometryRole(QcodesTriton(driver), LIMITS, mixing_chamber=MC, sample=SAMPLE)
            for kind, value in requests:
                with contextlib.suppress(LimitError):
                    if kind == "setpoint":
                        role.set_setpoint(value)
                    elif kind == "range":
                        role.set_heater_range(value)
                    else:
                        role.heater_off()
                lab.clock.sleep(5)
                fridge = lab.state.fridge
                assert fridge.heater_range <= 6  # 10 mA, the cap, in the fridge's own range index
        finally:
            driver.close()
        assert all(0 <= t <= LIMITS.max_temperature for t in _loop_values(lab, "TSET"))
        assert all(r <= LIMITS.max_heater_range * 1e3 for r in _loop_values(lab, "RANGE"))
        assert not [c for c in lab.command_log("fridge") if c.error and "VRM" not in c.command]

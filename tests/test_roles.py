"""The roles on the simulated lab: resistance against the model, settle waits, breakdown, quench."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from conftest import STATION
from qbs_lab.drivers.errors import LeakageError, LimitError, QuenchError

from qbs_lab.sim import SimLab
from qbs_lab.station import Station, StationConfig, load_station


@pytest.fixture
def rig() -> Iterator[tuple[SimLab, Station]]:
    with SimLab.from_station(STATION, seed=3) as lab:
        st = load_station(STATION).connect(visalib=lab.visalib, clock=lab.clock)
        try:
            yield lab, st
        finally:
            st.close()


def _truth_R(lab: SimLab) -> float:
    lab.state.sync()
    return lab.state.operating_point()["R"]  # the model's R at the present V_g, B, T_e


@pytest.mark.parametrize(
    ("V_g", "B_frac", "T"), [(15.0, 0.6, 0.1), (15.0, 1.0, 0.2), (25.0, 1.3, 0.3), (8.0, 0.0, 0.15)]
)
def test_resistance_through_the_roles_matches_the_model(
    rig: tuple[SimLab, Station], V_g: float, B_frac: float, T: float
) -> None:
    lab, st = rig
    st.gate.ramp_to(V_g)
    st.magnet.ramp_to(B_frac * lab.truth_at(15.0)["B_c"])
    st.thermometry.set_heater_range(1e-3)
    st.thermometry.set_setpoint(T)
    lab.clock.sleep(900)
    reading = st.resistance.measure()
    R_true = _truth_R(lab)
    noise_R = lab.state.lockin.noise_rms() / reading.I  # one reading's noise [Ohm]
    assert reading.status.ok
    assert reading.R == pytest.approx(R_true, abs=5 * noise_R + 1e-4 * R_true)


def test_a_reading_without_the_settle_wait_is_wrong(rig: tuple[SimLab, Station]) -> None:
    lab, st = rig
    st.magnet.ramp_to(1.3 * lab.truth["B_c"] + 0.005)
    st.resistance.measure()  # settled at 1 nA
    st.lockin.set_amplitude(0.02)  # 2 nA from now on
    hasty = st.resistance.measure(settle=False)
    settled = st.resistance.measure()
    R_true = _truth_R(lab)
    noise_R = lab.state.lockin.noise_rms() / settled.I
    assert settled.R == pytest.approx(R_true, abs=5 * noise_R + 1e-4 * R_true)
    assert abs(hasty.R - R_true) > 100 * noise_R  # the filter still shows the old voltage
    assert hasty.R == pytest.approx(0.5 * R_true, rel=0.05)


def test_autoranging_recovers_from_an_overload(rig: tuple[SimLab, Station]) -> None:
    lab, st = rig
    st.lockin.set_sensitivity(2e-6)  # ~12 uV of signal on a 2 uV range: output overload
    reading = st.resistance.measure()
    assert reading.status.ok and reading.sensitivity >= 2e-5
    assert reading.R == pytest.approx(_truth_R(lab), rel=1e-3)


def test_gate_breakdown_is_caught_by_the_leakage_limit_and_left_safe() -> None:
    # a station whose gate limit is set too high: 80 V lets the ramp reach the oxide's breakdown (60 V)
    with SimLab.from_station(STATION, seed=1) as lab:
        cfg: StationConfig = load_station(STATION)
        cfg = dataclasses.replace(cfg, gate=dataclasses.replace(cfg.gate, max=80.0, current_limit=1e-6))
        st = cfg.connect(visalib=lab.visalib, clock=lab.clock)
        try:
            with pytest.raises(LeakageError) as err:
                st.gate.ramp_to(75.0)
            assert err.value.voltage > lab.state.gate.V_bd  # it got into breakdown ...
            assert err.value.voltage <= lab.state.gate.V_bd + 2.5  # ... and was stopped a few steps in
            assert abs(err.value.current) > cfg.gate.leakage_limit
            lab.state.sync()
            assert lab.state.gate.output_voltage() == pytest.approx(cfg.gate.safe_value)
            assert abs(st.gate.leakage()) < cfg.gate.leakage_limit
            levels = [
                float(c.args[0])
                for c in lab.command_log("gate")
                if "VOLT" in c.header.upper()
                and c.reply is None
                and c.args
                and c.header.upper().lstrip(":").startswith("SOUR")
            ]
            assert max(levels) <= err.value.voltage + 1e-9  # nothing above where it stopped was sent
            assert levels[-1] == cfg.gate.safe_value
        finally:
            st.close()


def test_a_quench_during_a_ramp_raises_quench_error(rig: tuple[SimLab, Station]) -> None:
    lab, st = rig
    original_sleep = lab.clock.sleep

    def sleep_then_quench(seconds: float) -> None:  # the magnet quenches 3 s into the ramp
        original_sleep(seconds)
        if lab.clock.now() - t0 > 3.0 and not lab.state.magnet.quenched:
            lab.state.magnet.quench()

    t0 = lab.clock.now()
    lab.clock.sleep = sleep_then_quench  # type: ignore[method-assign]
    try:
        with pytest.raises(QuenchError):
            st.magnet.ramp_to(0.05)
    finally:
        lab.clock.sleep = original_sleep  # type: ignore[method-assign]
    with pytest.raises(QuenchError):  # and no new ramp starts on a quenched supply
        st.magnet.ramp_to(0.01)


def test_targets_outside_the_limits_are_refused_before_anything_is_sent(rig: tuple[SimLab, Station]) -> None:
    lab, st = rig
    before = {name: len(lab.command_log(name)) for name in ("gate", "magnet", "fridge", "rf")}
    for call in (
        lambda: st.gate.ramp_to(41.0),
        lambda: st.magnet.ramp_to(0.2),
        lambda: st.magnet.ramp_to(0.01, rate=0.01),
        lambda: st.thermometry.set_setpoint(2.0),
        lambda: st.thermometry.set_heater_range(0.1),
        lambda: st.rf.set_power(0.0),  # type: ignore[union-attr]
    ):
        with pytest.raises(LimitError):
            call()
    assert {name: len(lab.command_log(name)) for name in before} == before


def test_caps_hold_for_the_value_the_instrument_would_get(rig: tuple[SimLab, Station]) -> None:
    _, st = rig
    therm = dataclasses.replace(st.thermometry.limits, max_heater_range=0.009995)
    st.thermometry.limits = therm  # a cap just under the 10 mA range
    with pytest.raises(LimitError):
        st.thermometry.set_heater_range(0.009995)  # would select the 10 mA range
    st.rf.limits = dataclasses.replace(st.rf.limits, max_power=-10.003)  # type: ignore[union-attr]
    with pytest.raises(LimitError):
        st.rf.set_power(-10.004)  # type: ignore[union-attr]  # the source would set -10.00 dBm


def test_a_ramp_rate_the_supply_refuses_stops_the_ramp(rig: tuple[SimLab, Station]) -> None:
    from qbs_lab.drivers.errors import SafetyError

    lab, st = rig
    with pytest.raises(SafetyError, match="did not take the ramp rate"):
        st.magnet.ramp_to(0.01, rate=5e-6)  # below the 430's smallest rate
    assert not any(c.header.upper() == "RAMP" for c in lab.command_log("magnet"))


def test_a_station_with_a_raw_socket_instrument_runs_on_the_simulated_lab(tmp_path) -> None:
    # QCoDeS's IP instruments (here an Oxford Triton) take host and port, not VISA: the lab serves them
    text = STATION.read_text()
    text = text.replace(
        "    type: qcodes.instrument_drivers.Lakeshore.LakeshoreModel372\n"
        "    address: TCPIP0::192.168.10.31::7777::SOCKET",
        "    type: qcodes.instrument_drivers.oxford.OxfordTriton\n"
        "    address: 192.168.10.40\n    port: 33576",
    ).replace("heater: sample_heater", "heater: H1")
    path = tmp_path / "station.yaml"
    path.write_text(text)
    config = load_station(path)
    with SimLab.from_station(path, seed=0) as lab, config.connect(lab=lab) as st:
        st.thermometry.set_heater_range(3.16e-3)
        st.thermometry.set_setpoint(0.2)
        lab.clock.sleep(900)
        assert st.thermometry.temperature_mc() == pytest.approx(0.2, rel=0.02)
        assert any(c.command.startswith("SET:DEV:T") for c in lab.command_log("fridge"))

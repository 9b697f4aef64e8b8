"""Dynamics of the simulated lab's physical state (no drivers involved)."""

import numpy as np
import pytest

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.lockin import settle_fraction
from qbs_lab.sim.magnet import MagnetState


def make(scenario: str = "clean") -> tuple[LabState, VirtualClock]:
    clock = VirtualClock()
    lab = LabState.create(clock=clock, scenario=scenario)
    lab.gate.output_on = True
    lab.gate.voltage_setpoint = 15.0
    return lab, clock


def test_lockin_output_lags_a_step_by_its_filter() -> None:
    lab, clock = make()
    lab.magnet.segments = [(1.0, 1.0)]  # fast, so the field step is (almost) instant
    lab.magnet.voltage_limit = 1e4
    lab.magnet.quench_rate = 10.0  # a coil that tolerates it, for a (nearly) instant step
    B_c = lab.truth(15.0)["B_c"]
    lab.magnet.target = 0.5 * B_c
    lab.magnet.ramp()
    clock.sleep(60)
    lab.sync()
    old = lab.lockin.output().real
    lab.magnet.target = 1.5 * B_c
    lab.magnet.ramp()
    clock.sleep(0.3)  # one time constant after the step
    lab.sync()
    new_input = lab.lockin.input.real
    early = lab.lockin.output().real
    frac = (early - old) / (new_input - old)
    expected = settle_fraction(0.3, lab.lockin.time_constant, lab.lockin.stages)
    assert frac == pytest.approx(expected, abs=0.03)
    assert frac < 0.1  # a 24 dB/oct filter has hardly moved after one tau
    clock.sleep(15 * lab.lockin.time_constant)
    lab.sync()
    assert lab.lockin.output().real == pytest.approx(lab.lockin.input.real, rel=1e-4)


def test_mixing_chamber_settles_at_the_setpoint_under_pid() -> None:
    lab, clock = make()
    f = lab.fridge
    f.heater_mode, f.heater_range, f.setpoint = "closed_loop", 3, 0.1
    clock.sleep(600)
    lab.sync()
    assert f.T_mc == pytest.approx(0.1, rel=0.005)
    assert f.T_sample == pytest.approx(0.1, rel=0.01)
    # the sample lags the mixing chamber after a setpoint step
    f.setpoint = 0.15
    clock.sleep(30)
    lab.sync()
    assert f.T_sample < f.T_mc < 0.15


def test_heater_off_cools_to_base() -> None:
    lab, clock = make()
    lab.fridge.T_mc = lab.fridge.T_sample = 0.5
    clock.sleep(3600)
    lab.sync()
    assert lab.fridge.T_mc < 0.02


def test_magnet_ramps_at_the_set_rate_then_holds() -> None:
    lab, clock = make()
    m = lab.magnet
    m.segments = [(1e-3, 10.0)]
    m.target = 0.02
    m.ramp()
    clock.sleep(10.0)
    lab.sync()
    assert m.state == MagnetState.RAMPING
    assert m.field() == pytest.approx(0.01, rel=1e-6)
    clock.sleep(10.0 + 1e-6)
    lab.sync()
    assert m.state == MagnetState.HOLDING
    assert m.magnet_field() == pytest.approx(0.02)
    m.quench()
    assert m.state == MagnetState.QUENCH and m.magnet_field() == 0.0


def test_persistent_magnet_keeps_its_field() -> None:
    lab, clock = make()
    m = lab.magnet
    m.switch_installed = True
    m.set_switch_heater(True)
    clock.sleep(m.switch_heat_time + 1)
    lab.sync()
    m.segments = [(1e-2, 10.0)]
    m.target = 0.05
    m.ramp()
    clock.sleep(10)
    lab.sync()
    m.set_switch_heater(False)
    clock.sleep(m.switch_cool_time + 1)
    lab.sync()
    m.zero()
    clock.sleep(10)
    lab.sync()
    assert m.field() == 0.0 and m.magnet_field() == pytest.approx(0.05)


def _R_at(lab: LabState, clock: VirtualClock, *, amplitude: float, rf_dbm: float | None) -> float:
    lab.lockin.amplitude = amplitude
    lab.rf.output_on = rf_dbm is not None
    if rf_dbm is not None:
        lab.rf.power = rf_dbm
    clock.sleep(30)
    lab.sync()
    return lab.operating_point()["R"]


@pytest.mark.parametrize("scenario", ["clean", "rf_leak"])
def test_excitation_and_rf_raise_R_at_low_T_and_P_env_only_in_rf_leak(scenario: str) -> None:
    lab, clock = make(scenario)
    B_c = lab.truth(15.0)["B_c"]
    lab.magnet.segments = [(1.0, 1.0)]
    lab.magnet.target = 0.7 * B_c
    lab.magnet.ramp()
    R_low = _R_at(lab, clock, amplitude=0.001, rf_dbm=None)  # 0.1 nA
    R_exc = _R_at(lab, clock, amplitude=0.1, rf_dbm=None)  # 10 nA
    R_rf = _R_at(lab, clock, amplitude=0.001, rf_dbm=10.0)
    assert R_exc > 1.2 * R_low
    assert R_rf > 1.2 * R_low
    # what the environment alone does, against the same sample without it
    clean = LabState.create(clock=clock, scenario="clean")
    clean.gate.output_on, clean.gate.voltage_setpoint = True, 15.0
    clean.magnet.segments, clean.magnet.target = [(1.0, 1.0)], 0.7 * B_c
    clean.magnet.ramp()
    R_clean = _R_at(clean, clock, amplitude=0.001, rf_dbm=None)
    if scenario == "rf_leak":
        assert R_low > 3 * R_clean
    else:
        assert R_low == pytest.approx(R_clean, rel=1e-9)


def test_gate_compliance_limits_the_voltage_at_breakdown() -> None:
    lab, _ = make()
    g = lab.gate
    g.current_limit = 1e-8
    g.voltage_setpoint = g.V_bd + 20
    assert g.in_compliance()
    assert g.V_bd < g.output_voltage() < g.voltage_setpoint
    assert abs(g.leakage(g.output_voltage())) == pytest.approx(1e-8, rel=1e-4)
    rng = np.random.default_rng(0)
    assert abs(g.measured_current(rng)) <= 1e-8 + 5 * g.noise


def test_supply_voltage_limit_caps_the_ramp_rate() -> None:
    lab, clock = make()
    m = lab.magnet
    m.segments = [(1.0, 10.0)]  # asks for 1 T/s
    m.voltage_limit = 2.0  # V; with L = 20 H: 0.1 A/s, i.e. 0.01 T/s at 0.1 T/A
    m.target = 0.05
    m.ramp()
    clock.sleep(2.0)
    lab.sync()
    assert m.field() == pytest.approx(0.02, rel=1e-9)
    assert m.voltage() == pytest.approx(2.0, rel=1e-6)


def test_setpoint_ramps_between_messages_and_temperature_limit_trips_the_heater() -> None:
    lab, clock = make()
    f = lab.fridge
    f.heater_mode, f.heater_range = "closed_loop", 5
    f.setpoint = 0.05
    f.ramp_setpoint(0.25, rate=0.2 / 600)  # 0.2 K in 10 minutes
    clock.sleep(300)
    lab.sync()  # nobody talked to the controller meanwhile
    assert f.setpoint == pytest.approx(0.15, rel=1e-6) and f.setpoint_target == 0.25
    clock.sleep(301)
    lab.sync()
    assert f.setpoint == 0.25 and f.setpoint_target is None
    f.temperature_limits[f.control_channel] = 0.2
    clock.sleep(600)
    lab.sync()
    assert f.limit_tripped and f.heater_range == 0 and f.heater_power() == 0.0


def test_over_rate_ramp_and_mismatched_switch_heating_quench_the_magnet() -> None:
    lab, clock = make()
    m = lab.magnet
    m.voltage_limit, m.segments, m.target = 1e3, [(0.1, 10.0)], 0.05  # 0.1 T/s > quench_rate
    m.ramp()
    clock.sleep(1.0)
    lab.sync()
    assert m.state == MagnetState.QUENCH and m.quenched and m.magnet_field() == 0.0

    lab2, clock2 = make()
    m = lab2.magnet
    m.switch_installed = True
    m.set_switch_heater(True)
    clock2.sleep(m.switch_heat_time + 1)
    m.segments, m.target = [(0.01, 10.0)], 0.02
    m.ramp()
    clock2.sleep(5)
    lab2.sync()
    m.set_switch_heater(False)  # persistent at 20 mT
    clock2.sleep(m.switch_cool_time + 1)
    m.zero()
    clock2.sleep(5)
    lab2.sync()
    assert m.magnet_field() == pytest.approx(0.02) and m.current() == 0.0
    m.set_switch_heater(True)  # supply at 0 A, coil at 0.2 A: a 0.2 A step through the coil
    assert m.state == MagnetState.QUENCH and m.magnet_field() == 0.0

"""The simulated physics as a user sees it: read through the unmodified QCoDeS drivers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import STATION
from qcodes.instrument_drivers.american_magnetics import AMIModel430
from qcodes.instrument_drivers.Keithley import Keithley2450
from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A
from qcodes.instrument_drivers.stanford_research import SR830

from qbs_lab.sim import SimLab
from qbs_lab.sim.soak import run_soak

V_G = 15.0  # V


@dataclass
class Rig:
    lab: SimLab
    lockin: SR830
    gate: Keithley2450
    magnet: AMIModel430
    fridge: LakeshoreModel372
    rf: RohdeSchwarzSGS100A

    def resistance(self, n: int = 1) -> float:
        """R [Ohm] from the lock-in's X and the bias resistor, averaged over ``n`` readings."""
        V_osc = self.lockin.amplitude()
        R_bias = self.lab.state.bias_resistor
        xs = []
        for _ in range(n):
            x, _ = self.lockin.snap("x", "y")
            xs.append(x)
            self.lab.clock.sleep(3 * self.lockin.time_constant())  # independent noise samples
        x = float(np.mean(xs))
        return x * R_bias / (V_osc - x)  # I = V_osc / (R_bias + R)

    def close(self) -> None:
        for inst in (self.lockin, self.gate, self.magnet, self.fridge, self.rf):
            inst.close()
        self.lab.close()

    def settle(self) -> None:
        self.lab.clock.sleep(15 * self.lockin.time_constant())  # 24 dB/oct: settled to < 1e-4

    def set_temperature(self, T: float) -> None:
        heater = self.fridge.sample_heater
        heater.setpoint(T)
        heater.mode("closed_loop")
        heater.output_range("3.16mA" if T > 0.3 else "316μA")
        self.lab.clock.sleep(900)


def make_rig(scenario: str = "clean", seed: int = 2) -> Rig:
    lab = SimLab.from_station(STATION, seed=seed, scenario=scenario)
    kw = {"visalib": lab.visalib}
    rig = Rig(
        lab,
        SR830(f"lockin_{scenario}", lab.address("lockin"), **kw),
        Keithley2450(f"gate_{scenario}", lab.address("gate"), **kw),
        AMIModel430(f"magnet_{scenario}", lab.address("magnet"), current_ramp_limit=0.06, **kw),
        LakeshoreModel372(f"fridge_{scenario}", lab.address("fridge"), **kw),
        RohdeSchwarzSGS100A(f"rf_{scenario}", lab.address("rf"), **kw),
    )
    rig.lockin.amplitude(0.01)  # 1 nA through 10 MOhm
    rig.lockin.time_constant(0.3)
    rig.lockin.filter_slope(24)
    rig.lockin.sensitivity(2e-4)
    rig.gate.source.function("voltage")
    rig.gate.source.limit(1e-7)
    rig.gate.output_enabled(True)
    for v in np.linspace(0, V_G, 16)[1:]:
        rig.gate.source.voltage(float(v))
    rig.magnet.ramping_state_check_interval(0.2)
    rig.magnet.ramp_rate(0.002)
    rig.fridge.sample_heater.input_channel(lab.state.fridge.control_channel)
    rig.fridge.sample_heater.P(10)
    rig.fridge.sample_heater.I(20)
    return rig


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = make_rig()
    yield r
    r.close()


def _line(B: np.ndarray, R: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares line R = a + b*(B - mean B): a, b and their standard errors for unit noise."""
    Bm = B - B.mean()
    b = float(np.sum(Bm * R) / np.sum(Bm * Bm))
    a = float(R.mean())
    return a, b, 1 / np.sqrt(len(B)), 1 / np.sqrt(np.sum(Bm * Bm))


def test_field_isotherms_cross_at_the_truth_within_noise(rig: Rig) -> None:
    truth = rig.lab.truth
    assert truth["V_g"] == pytest.approx(V_G)
    B_c, R_c = truth["B_c"], truth["R_c"]
    fields = B_c * np.linspace(0.97, 1.03, 7)
    lines = {}
    for T in (0.08, 0.32):
        rig.set_temperature(T)
        R = []
        for B in fields:
            rig.magnet.set_field(float(B))
            rig.settle()
            R.append(rig.resistance(n=4))
        lines[T] = _line(fields, np.asarray(R))
    (a1, b1, sa, _), (a2, b2, _, _) = lines[0.08], lines[0.32]
    B0 = fields.mean()
    B_x = B0 + (a2 - a1) / (b1 - b2)
    R_x = a1 + b1 * (B_x - B0)
    # noise of one averaged R point, from the lock-in's noise at these settings
    sigma_R = rig.lab.state.lockin.noise_rms() / 1e-9 / 2
    sigma_B = np.sqrt(2) * sigma_R * sa / abs(b1 - b2)
    assert abs(B_x - B_c) < 5 * sigma_B + 2e-4 * B_c  # 2e-4: the line fits over +-3% of B_c
    assert abs(R_x - R_c) < 5 * sigma_R + 2e-4 * R_c
    # below B_c R falls on cooling, above it rises: a real crossing
    assert b1 > b2 > 0


def test_a_lockin_reading_right_after_a_step_lags_by_its_filter(rig: Rig) -> None:
    rig.magnet.set_field(1.5 * rig.lab.truth["B_c"])
    rig.settle()
    before = rig.resistance(n=4) * rig.lockin.amplitude()  # V: R*V_osc is proportional to X
    x0, _ = rig.lockin.snap("x", "y")
    rig.lockin.amplitude(0.02)  # the excitation doubles at once
    x_now, _ = rig.lockin.snap("x", "y")
    rig.settle()
    x_late, _ = rig.lockin.snap("x", "y")
    assert before > 0
    assert abs(x_now / x0 - 1) < 0.02  # a 24 dB/oct filter has hardly moved after a few ms
    assert 1.8 < x_late / x0 < 2.2  # after 15 time constants it has followed


def test_a_reading_three_time_constants_after_a_step_follows_the_filter_response(rig: Rig) -> None:
    rig.magnet.set_field(1.5 * rig.lab.truth["B_c"])
    rig.settle()
    x0, _ = rig.lockin.snap("x", "y")
    tau = rig.lockin.time_constant()
    rig.lockin.amplitude(0.02)
    rig.lab.clock.sleep(3 * tau)
    x3, _ = rig.lockin.snap("x", "y")
    rig.settle()
    x_end, _ = rig.lockin.snap("x", "y")
    # 4 RC stages after t = 3 tau: 1 - exp(-3) * (1 + 3 + 9/2 + 27/6) = 0.3528
    expected = x0 + 0.3528 * (x_end - x0)
    assert x3 == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(("slope", "enbw_tau"), [(6, 1 / 4), (12, 1 / 8), (18, 3 / 32), (24, 5 / 64)])
def test_lockin_noise_follows_the_equivalent_noise_bandwidth(rig: Rig, slope: int, enbw_tau: float) -> None:
    # deep in the superconducting state (B = 0, base temperature): R ~ 0, only the input noise remains
    rig.lockin.time_constant(0.1)
    rig.lockin.filter_slope(slope)
    rig.lockin.sensitivity(2e-6)
    samples = []
    for _ in range(300):
        rig.lab.clock.sleep(1.5)
        samples.extend(rig.lockin.snap("x", "y"))
    e_n = 6e-9  # V/sqrt(Hz), the simulated lock-in's input noise
    expected = e_n * np.sqrt(enbw_tau / 0.1)
    assert np.std(samples) == pytest.approx(expected, rel=0.08)
    assert abs(np.mean(samples)) < 4 * expected / np.sqrt(len(samples))


def _R_low_T(rig: Rig, *, amplitude: float, rf_dbm: float | None) -> float:
    rig.lockin.amplitude(amplitude)
    if rf_dbm is None:
        rig.rf.status("off")
    else:
        rig.rf.power(rf_dbm)
        rig.rf.status("on")
    rig.lab.clock.sleep(60)
    return rig.resistance(n=8)


def _R_base(scenario: str) -> float:
    """R [Ohm] at 0.7 B_c and base temperature with 0.4 nA, nothing else on, in a fresh lab."""
    r = make_rig(scenario)
    try:
        r.magnet.set_field(0.7 * r.lab.truth["B_c"])
        return _R_low_T(r, amplitude=0.004, rf_dbm=None)
    finally:
        r.close()


@pytest.mark.parametrize("scenario", ["clean", "rf_leak"])
def test_excitation_and_rf_raise_R_at_low_T_and_P_env_only_in_rf_leak(scenario: str) -> None:
    R_clean = _R_base("clean")
    r = make_rig(scenario)
    try:
        r.magnet.set_field(0.7 * r.lab.truth["B_c"])
        R_low = _R_low_T(r, amplitude=0.004, rf_dbm=None)  # 0.4 nA, heater off: base temperature
        R_exc = _R_low_T(r, amplitude=0.1, rf_dbm=None)  # 10 nA
        R_rf = _R_low_T(r, amplitude=0.004, rf_dbm=10.0)
    finally:
        r.close()
    # heating raises R; in rf_leak the electrons are already hot, so the rise is smaller
    assert R_exc > 1.2 * R_low
    assert R_rf > 1.2 * R_low
    if scenario == "rf_leak":
        assert R_low > 3 * R_clean  # the hidden environment heats the electrons
    else:
        assert R_low == pytest.approx(R_clean, abs=30.0)  # same lab, same seed: same R within noise
        assert R_low < 200.0  # clean and cold: deep in the superconducting tail (Ohm)


@pytest.mark.timeout(180)
def test_an_overnight_sequence_repeats_bit_identically_for_a_seed() -> None:
    runs = []
    for seed in (5, 5, 6):
        with SimLab.from_station(STATION, seed=seed) as lab:
            rows = run_soak(lab, hours=8.0)
            assert lab.clock.now() >= 8 * 3600
        runs.append(rows)
    assert len(runs[0]) >= 40
    assert runs[0] == runs[1]  # exact equality of every float
    assert runs[0] != runs[2]  # and the seed matters

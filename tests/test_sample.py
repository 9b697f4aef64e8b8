"""The sample model: exact crossing and collapse, scenarios, heating."""

import numpy as np
import pytest

from qbs_lab.sim.sample import H_OVER_4E2, SCENARIOS, SampleModel, scenario_params


@pytest.mark.parametrize("V_g", [12.0, 15.0, 25.0])
def test_field_isotherms_cross_exactly_at_truth(V_g: float) -> None:
    model = SampleModel()
    truth = model.truth(V_g)
    B_c, R_c = truth["B_c"], truth["R_c"]
    temps = [0.03, 0.06, 0.12, 0.25, 0.5]
    at_bc = [model.resistance(V_g, B_c, T) for T in temps]
    assert np.allclose(at_bc, R_c, rtol=1e-12)
    # below B_c R falls on cooling, above it rises
    below = [model.resistance(V_g, 0.7 * B_c, T) for T in temps]
    above = [model.resistance(V_g, 1.3 * B_c, T) for T in temps]
    assert np.all(np.diff(below) > 0)
    assert np.all(np.diff(above) < 0)


def test_isotherms_collapse_exactly_with_znu() -> None:
    model = SampleModel()
    V_g = 15.0
    t = model.truth(V_g)
    znu, B_c, B_c0 = t["znu"], t["B_c"], model.params.B_c0
    R_N = model.normal_resistance(V_g)
    xs, ys = [], []
    for T in (0.04, 0.08, 0.16, 0.32):
        for B in np.linspace(0.5 * B_c, 1.5 * B_c, 9):
            xs.append((B - B_c) / B_c0 * T ** (-1 / znu))
            ys.append(model.resistance(V_g, B, T) / R_N)
    order = np.argsort(xs)
    # one curve: R/R_N is a single-valued, monotonic function of x
    assert np.all(np.diff(np.asarray(ys)[order]) >= -1e-12)
    wrong = 2 * znu
    xw = [
        (B - B_c) / B_c0 * T ** (-1 / wrong)
        for T in (0.04, 0.08, 0.16, 0.32)
        for B in np.linspace(0.5 * B_c, 1.5 * B_c, 9)
    ]
    assert np.any(np.diff(np.asarray(ys)[np.argsort(xw)]) < -1e-3)


def test_gate_tuned_crossing_at_zero_field() -> None:
    model = SampleModel()
    t = model.truth()
    V_gc = t["V_gc"]
    assert 8.0 < V_gc < 12.0
    temps = [0.03, 0.1, 0.3]
    assert np.allclose([model.resistance(V_gc, 0.0, T) for T in temps], t["R_c_gate"])
    # superconducting side above V_gc: R falls on cooling; below V_gc it does not
    hi = [model.resistance(V_gc + 2, 0.0, T) for T in temps]
    lo = [model.resistance(V_gc - 2, 0.0, T) for T in temps]
    assert np.all(np.diff(hi) > 0) and np.all(np.diff(lo) < 0)


def test_critical_resistance_is_near_pair_quantum() -> None:
    R_c = SampleModel().truth(15.0)["R_c"]
    assert 0.7 < R_c / H_OVER_4E2 < 1.3


def test_anomalous_metal_floor_is_intrinsic() -> None:
    clean = SampleModel(scenario_params("clean"))
    am = SampleModel(scenario_params("anomalous_metal"))
    B = 0.6 * clean.truth(15.0)["B_c"]
    assert am.resistance(15.0, B, 0.02) > 20 * clean.resistance(15.0, B, 0.02)
    # the floor does not move the crossing
    t = am.truth(15.0)
    assert am.resistance(15.0, t["B_c"], 0.03) == pytest.approx(t["R_c"])


def test_drifting_scenario_moves_the_crossing_with_temperature() -> None:
    m = SampleModel(scenario_params("drifting"))
    assert m.critical_field(15.0, 0.5) > 1.1 * m.critical_field(15.0, 0.0)


def test_electron_heating_by_excitation_rf_and_environment() -> None:
    clean = SampleModel(scenario_params("clean"))
    leak = SampleModel(scenario_params("rf_leak"))
    T = 0.02
    assert clean.electron_temperature(T, 0.0, None) == pytest.approx(T)
    # 10 nA through ~6 kOhm heats; 0.1 nA does not (measurably)
    assert clean.electron_temperature(T, (10e-9) ** 2 * 6e3, None) > 3 * T
    assert clean.electron_temperature(T, (0.1e-9) ** 2 * 6e3, None) < 1.01 * T
    # the hidden environment heats only in rf_leak; there RF couples strongly
    assert leak.electron_temperature(T, 0.0, None) > 2 * T
    assert leak.electron_temperature(T, 0.0, -20.0) > 1.3 * leak.electron_temperature(T, 0, None)
    assert clean.electron_temperature(T, 0.0, -20.0) < 1.01 * T


def test_scenarios_are_named_and_unknown_ones_refused() -> None:
    assert set(SCENARIOS) == {"clean", "anomalous_metal", "rf_leak", "drifting"}
    with pytest.raises(KeyError, match="unknown scenario"):
        scenario_params("nonsense")

"""Scaling collapse: z*nu, x_c, the quality S and exclusion of heated isotherms, against the model's truth."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from qbs_lab.analysis.collapse import fit_collapse, quality_S
from qbs_lab.sim.sample import SampleModel, SampleParams

V_G = 15.0
TEMPS = (0.05, 0.08, 0.12, 0.18, 0.27, 0.4)


def isotherms(
    znu: float,
    seed: int = 0,
    heated: dict[float, float] | None = None,
    noise: float = 0.01,
    with_errors: bool = True,
):
    """Field isotherms at TEMPS with `noise` relative Gaussian noise on random grids denser near B_c.

    `heated` maps a label T to the electron temperature actually used for that isotherm.
    """
    model = SampleModel(dataclasses.replace(SampleParams(), znu=znu))
    truth = model.truth(V_G)
    B_c = truth["B_c"]
    rng = np.random.default_rng(seed)
    out = {}
    for T in TEMPS:
        n = int(rng.integers(45, 60))
        s = rng.uniform(-1.0, 1.0, n)
        B = np.sort(B_c * (1.0 + 0.35 * np.sign(s) * np.abs(s) ** 1.5))  # non-uniform, dense near B_c
        T_e = (heated or {}).get(T, T)
        R = np.array([model.resistance(V_G, b, T_e) for b in B])
        dR = noise * R
        out[T] = (B, R + dR * rng.standard_normal(n), dR if with_errors else None)
    return out, truth


@pytest.mark.parametrize("znu", [0.8, 1.3, 2.0])
def test_znu_and_critical_field_recovered(znu: float) -> None:
    iso, truth = isotherms(znu, seed=int(znu * 10))
    res = fit_collapse(iso, n_boot=8, seed=1)
    assert abs(res.znu / znu - 1) < 0.10, res
    assert abs(res.x_c - truth["B_c"]) < 0.01 * truth["B_c"], res
    assert 0.3 < res.quality < 3.0, res
    assert res.excluded == [], res.excluded
    assert 0 < res.znu_err < 0.1 * znu
    assert 0 < res.x_c_err < 0.01 * truth["B_c"]
    assert abs(res.R_c / truth["R_c"] - 1) < 0.02
    assert res.window > 0 and res.temperatures == sorted(TEMPS)


def test_fixed_critical_field() -> None:
    iso, truth = isotherms(1.3, seed=3)
    res = fit_collapse(iso, x_c=truth["B_c"], n_boot=5)
    assert res.x_c == truth["B_c"] and res.x_c_err == 0.0
    assert abs(res.znu / 1.3 - 1) < 0.10
    assert 0.3 < res.quality < 3.0


def test_quality_near_one_at_optimum_and_large_at_wrong_znu() -> None:
    iso, truth = isotherms(1.3, seed=5)
    B_c = truth["B_c"]
    res = fit_collapse(iso, x_c=B_c, n_boot=0)

    def S_at(znu: float) -> float:
        us = [(x - B_c) * T ** (-1 / znu) for T, (x, _R, _d) in iso.items()]
        return quality_S(us, [R for _x, R, _d in iso.values()], [d for _x, _R, d in iso.values()])

    assert 0.3 < S_at(1.3) < 3.0
    assert S_at(1.3) == pytest.approx(res.quality, rel=0.3)
    assert S_at(0.8) > 20 * S_at(1.3)
    assert S_at(2.6) > 20 * S_at(1.3)


def test_quality_of_identical_curves_is_small_and_of_offset_curves_large() -> None:
    u = np.linspace(-1, 1, 30)
    y = np.tanh(u)
    assert quality_S([u, u + 0.01], [y, np.tanh(u + 0.01)], [0.01, 0.01]) < 0.1
    assert quality_S([u, u], [y, y + 0.1], [0.01, 0.01]) > 30
    assert math.isnan(quality_S([u, u + 5], [y, y], [0.01, 0.01]))  # no overlap, no bracket


def test_heated_lowest_isotherm_is_excluded_with_reason() -> None:
    iso, truth = isotherms(1.3, seed=7, heated={0.05: 0.11})
    res = fit_collapse(iso, n_boot=5)
    assert [T for T, _ in res.excluded] == [0.05], res.excluded
    reason = res.excluded[0][1]
    assert "T=0.05 K" in reason and "heating" in reason and "S_i" in reason
    assert 0.05 not in res.temperatures
    assert abs(res.znu / 1.3 - 1) < 0.10
    assert abs(res.x_c - truth["B_c"]) < 0.01 * truth["B_c"]
    assert 0.3 < res.quality < 3.0
    # without exclusion the heated isotherm spoils the collapse
    bad = fit_collapse(iso, n_boot=0, exclude=False)
    assert bad.quality > 5


def test_noise_estimated_when_errors_missing_and_nans_ignored() -> None:
    iso, truth = isotherms(1.3, seed=11, with_errors=False)
    T0 = TEMPS[2]
    x, R, _ = iso[T0]
    R = R.copy()
    R[[3, 10]] = np.nan
    iso[T0] = (x, R, None)
    res = fit_collapse(iso, n_boot=0)
    assert abs(res.znu / 1.3 - 1) < 0.10
    assert abs(res.x_c - truth["B_c"]) < 0.01 * truth["B_c"]
    assert 0.3 < res.quality < 3.0


def test_explicit_window_is_respected() -> None:
    iso, truth = isotherms(1.3, seed=13)
    w = 0.15 * truth["B_c"]
    res = fit_collapse(iso, window=w, n_boot=0)
    assert res.window == w
    n_in = sum(int(np.sum(np.abs(x - res.window_center) <= w)) for x, _R, _d in iso.values())
    assert res.n_points == n_in
    assert abs(res.znu / 1.3 - 1) < 0.10


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        fit_collapse({0.1: (np.array([1.0, 2.0]), np.array([1.0, 2.0]), None)})

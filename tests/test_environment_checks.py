"""The environment checks: RF sensitivity and the excitation (ohmic / self-heating) check.

First the pure functions of :mod:`qbs_lab.analysis.environment` on synthetic datasets with known
answers (an exact change and slope, noise that must not be flagged, heating built from a known R(T) and
T_e^4 = T^4 + I^2 R / Sigma*A), then the procedures end to end on the simulated lab: scenario rf_leak is
RF-sensitive, clean and anomalous_metal are not, and the clean sample's largest excitations heat it
with the simulator's Sigma*A.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import xarray as xr

from qbs_lab.analysis.environment import dbm_to_watts, excitation_check, rf_sensitivity
from qbs_lab.plan import RF_OFF
from qbs_lab.procedure import load_procedure
from qbs_lab.runs import LabOptions, start_run
from qbs_lab.store.run_store import RunStore
from tests.conftest import STATION

LEVELS = (-40.0, -30.0, -20.0)


def _rf_dataset(R: np.ndarray, fields: tuple[float, ...]) -> xr.Dataset:
    """R over (B, repeat, P_rf) with RF off first, as the rf_sensitivity procedure stores it."""
    return xr.Dataset(
        {"R": (("B", "repeat", "P_rf"), R, {"units": "Ohm"})},
        coords={
            "B": ("B", list(fields), {"units": "T"}),
            "repeat": np.arange(R.shape[1], dtype=float),
            "P_rf": ("P_rf", [RF_OFF, *LEVELS], {"units": "dBm"}),
            "V_g": 15.0,
            "T": 0.06,
        },
    )


def _json_ready(out: dict) -> dict:
    return json.loads(json.dumps(out, allow_nan=False))  # raises on NaN, numpy types, anything odd


# -- rf_sensitivity on synthetic data ---------------------------------------------------------------
def test_rf_noise_alone_is_not_flagged() -> None:
    rng = np.random.default_rng(3)
    R0 = np.array([1200.0, 4700.0, 10200.0])[:, None, None]
    R = R0 * (1 + 0.003 * rng.standard_normal((3, 3, 4)))  # 0.3 % noise per reading, no RF effect
    out = _json_ready(rf_sensitivity(_rf_dataset(R, (0.008, 0.011, 0.015))))
    assert out["verdict"] == "RF-insensitive"
    assert all(p["verdict"] == "RF-insensitive" for p in out["points"])
    assert out["max_abs_dR_over_R"] < 0.01
    assert out["max_significance_sigma"] < 5
    assert out["summary"].startswith("RF-insensitive")
    assert out["fixed"] == {"V_g": 15.0, "T": 0.06}
    assert out["levels_dBm"] == list(LEVELS)


def test_rf_known_change_significance_and_slope() -> None:
    # point 0: R_off = 1000 Ohm, on-levels R = 1050 * (P / P(-40 dBm))^0.15; point 1: no change.
    # The repeats scatter by exactly -s, 0, +s about the mean: every level's sample std is s.
    s, slope = 2.0, 0.15
    P = dbm_to_watts(np.array(LEVELS))
    means0 = np.array([1000.0, *(1050.0 * (P / P[0]) ** slope)])
    means1 = np.full(4, 5000.0)
    offsets = np.array([-s, 0.0, s])
    R = np.stack([means0[None, :] + offsets[:, None], means1[None, :] + offsets[:, None]])
    out = _json_ready(rf_sensitivity(_rf_dataset(R, (0.008, 0.015))))
    assert out["verdict"] == "RF-sensitive"
    p0, p1 = out["points"]
    assert p0["verdict"] == "RF-sensitive" and p1["verdict"] == "RF-insensitive"
    assert p0["noise_Ohm"] == pytest.approx(s)
    assert p0["R_off_Ohm"] == pytest.approx(1000.0)
    first = p0["levels"][0]
    assert first["dR_Ohm"] == pytest.approx(50.0)
    assert first["dR_over_R"] == pytest.approx(0.05)
    # standard error of a difference of two means of three: s * sqrt(2/3)
    assert first["dR_err_Ohm"] == pytest.approx(s * math.sqrt(2 / 3), rel=1e-4)
    assert first["significance_sigma"] == pytest.approx(50.0 / (s * math.sqrt(2 / 3)), rel=1e-3)
    assert all(lv["sensitive"] for lv in p0["levels"])
    assert p0["dlogR_dlogP"] == pytest.approx(slope, rel=1e-3)
    assert p0["slope_levels_dBm"] == list(LEVELS)
    assert p1["levels"][0]["dR_Ohm"] == pytest.approx(0.0, abs=1e-9)
    assert "B=8 mT" in out["summary"] and "-20 dBm" in out["summary"]


def test_rf_both_criteria_are_needed() -> None:
    offsets = np.array([-1.0, 0.0, 1.0])
    # significant (0.3 % with 0.01 % scatter: ~37 sigma) but below the 1 % relative threshold
    small = np.array([1000.0, 1003.0, 1003.0, 1003.0])[None, :] + 0.1 * offsets[:, None]
    # 3 % but buried in 5 % scatter
    noisy = np.array([1000.0, 1030.0, 1030.0, 1030.0])[None, :] + 50.0 * offsets[:, None]
    out = rf_sensitivity(_rf_dataset(np.stack([small, noisy]), (0.008, 0.015)))
    p_small, p_noisy = out["points"]
    assert all(lv["significant"] and not lv["sensitive"] for lv in p_small["levels"])
    assert not any(lv["significant"] for lv in p_noisy["levels"])
    assert out["verdict"] == "RF-insensitive"
    # lowering the relative threshold to 0.2 % makes the small, significant change count
    assert (
        rf_sensitivity(_rf_dataset(np.stack([small, noisy]), (0.008, 0.015)), min_relative_change=0.002)[
            "verdict"
        ]
        == "RF-sensitive"
    )


def test_rf_needs_an_off_level() -> None:
    ds = _rf_dataset(np.ones((1, 2, 4)), (0.008,)).assign_coords(P_rf=[-50.0, *LEVELS])
    with pytest.raises(ValueError, match="RF-off"):
        rf_sensitivity(ds)


# -- excitation_check on synthetic data -------------------------------------------------------------
TEMPS = (0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.15, 0.2)
CURRENTS = (0.5e-9, 1e-9, 2e-9, 3e-9, 5e-9, 7e-9, 10e-9)
FREQS = (13.7, 77.7)


def _R_of_T(T: np.ndarray | float) -> np.ndarray:
    """A monotonic R(T) [Ohm]: a sample below its critical field."""
    return 2000.0 * (np.asarray(T) / 0.1) ** 2.5


def _excitation_dataset(
    sigma_A: float | None,
    *,
    noise_V: float = 0.5e-9,
    seed: int = 0,
    R_of=None,
    Y_ratio: float = 0.0,
    f_factor: float = 1.0,
) -> xr.Dataset:
    """R, X, Y, I and T_sample over (T, f_exc, I_exc); heated self-consistently with Sigma*A [W/K^4]
    (None: no heating), or R from ``R_of(T, I)``; X and Y carry ``noise_V`` of Gaussian noise."""
    rng = np.random.default_rng(seed)
    shape = (len(TEMPS), len(FREQS), len(CURRENTS))
    T = np.broadcast_to(np.array(TEMPS)[:, None, None], shape)
    I = np.broadcast_to(np.array(CURRENTS)[None, None, :], shape).copy()
    if R_of is not None:
        R_true = R_of(T, I)
    elif sigma_A is None:
        R_true = _R_of_T(T)
    else:
        T_e = T.copy()
        for _ in range(60):  # the self-consistent solution of T_e^4 = T^4 + I^2 R(T_e) / Sigma*A
            T_e = (T**4 + I**2 * _R_of_T(T_e) / sigma_A) ** 0.25
        R_true = _R_of_T(T_e)
    R_true = R_true * np.where(np.arange(len(FREQS)) == 1, f_factor, 1.0)[None, :, None]
    X = I * R_true + noise_V * rng.standard_normal(shape)
    Y = Y_ratio * I * R_true + noise_V * rng.standard_normal(shape)
    dims = ("T", "f_exc", "I_exc")
    return xr.Dataset(
        {
            "R": (dims, X / I, {"units": "Ohm"}),
            "X": (dims, X),
            "Y": (dims, Y),
            "I": (dims, I),
            "T_sample": (dims, T * (1 + 5e-4 * rng.standard_normal(shape))),
        },
        coords={"T": list(TEMPS), "f_exc": list(FREQS), "I_exc": list(CURRENTS), "V_g": 15.0, "B": 0.008},
    )


def test_excitation_ohmic_without_heating() -> None:
    out = _json_ready(excitation_check(_excitation_dataset(None)))
    assert out["verdict"] == "ohmic"
    assert out["heating"] is None
    assert out["max_abs_deviation"] < 0.01
    assert all(o["I_A"] == pytest.approx(10e-9) for o in out["ohmic_up_to_A"])
    assert out["noise_V"] == pytest.approx(0.5e-9, rel=0.3)  # read off the quadrature's scatter
    assert out["frequency_agreement"]["disagree"] is False
    assert out["warnings"] == []
    assert out["summary"].startswith("ohmic")


@pytest.mark.parametrize("sigma_A", [2e-9, 1e-8])
def test_excitation_heating_recovers_sigma_a(sigma_A: float) -> None:
    out = _json_ready(excitation_check(_excitation_dataset(sigma_A, seed=1)))
    assert out["verdict"] == "self-heating"
    h = out["heating"]
    assert h["explains"] is True
    assert h["sigma_A_W_per_K4"] == pytest.approx(sigma_A, rel=0.05)
    assert h["power_law_exponent"] == pytest.approx(1.0, abs=0.3)
    # the hottest point's T_e against the truth (self-consistent, at the bath's nominal temperature)
    read = [p for p in h["points"] if p["T_e_K"] is not None]  # not those beyond the calibrated R(T)
    assert len(read) >= 10
    hot = max(read, key=lambda p: p["T_e_K"] - p["T_bath_K"])
    T, I, Te = hot["T_bath_K"], hot["I_A"], hot["T_bath_K"]
    for _ in range(60):
        Te = (T**4 + I**2 * float(_R_of_T(Te)) / sigma_A) ** 0.25
    assert hot["T_e_K"] == pytest.approx(Te, rel=0.01)
    # at the lowest bath temperature the smallest currents are still ohmic, the largest are not
    lowest = out["ohmic_up_to_A"][0]
    assert 0.5e-9 <= lowest["I_A"] < 10e-9
    assert f"Sigma*A = {h['sigma_A_W_per_K4']:.3g}" in out["summary"]


def test_excitation_change_the_wrong_way_is_not_heating() -> None:
    # R(T) rises with T, but R falls with the current: no temperature explains it
    def falling(T: np.ndarray, I: np.ndarray) -> np.ndarray:
        return _R_of_T(T) * (1 - 0.05 * I / 10e-9)

    out = excitation_check(_excitation_dataset(None, R_of=falling))
    assert out["verdict"] == "non-ohmic (not heating)"
    assert out["heating"]["points_wrong_direction"] > 0
    assert out["heating"]["sigma_A_W_per_K4"] is None


def test_excitation_change_not_growing_as_joule_power_is_not_heating() -> None:
    # R follows a temperature, but T_e^4 - T^4 grows as I (not I^2 R): the exponent gives it away
    def linear(T: np.ndarray, I: np.ndarray) -> np.ndarray:
        return _R_of_T((T**4 + 2e-6 * I / 10e-9) ** 0.25)

    out = excitation_check(_excitation_dataset(None, R_of=linear))
    assert out["verdict"] == "non-ohmic (not heating)"
    assert out["heating"]["power_law_exponent"] < 0.7


def test_excitation_flags_out_of_phase_and_frequency_dependence() -> None:
    out = excitation_check(_excitation_dataset(None, Y_ratio=0.1, f_factor=1.05))
    assert out["max_out_of_phase"] == pytest.approx(0.1, rel=0.05)
    assert out["frequency_agreement"]["disagree"] is True
    assert out["frequency_agreement"]["max_abs_difference"] == pytest.approx(0.05, abs=0.01)
    assert len(out["warnings"]) == 2
    assert out["verdict"] == "ohmic"  # each frequency on its own is still ohmic


def test_excitation_without_temperatures_cannot_test_heating() -> None:
    ds = _excitation_dataset(2e-9).isel(T=0)  # one bath temperature: a scalar coordinate
    out = excitation_check(ds)
    assert out["verdict"] == "non-ohmic (heating untested)"
    assert "two or more bath temperatures" in out["heating"]["reason"]


# -- end to end on the simulated lab ----------------------------------------------------------------
def _run(procedure: str, scenario: str, tmp_path, seed: int = 0):
    proc = load_procedure(procedure)
    opts = LabOptions(station=STATION, sim=True, scenario=scenario, seed=seed, data_dir=tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):  # the drivers' "Connected to" lines
        outcome = start_run(proc, proc.parameters(), opts, progress=False, estimate=False)
    assert outcome.result.status == "completed"
    stored = json.loads(RunStore.open(outcome.path).attrs()["checks"])
    assert stored == json.loads(json.dumps(outcome.checks))  # the verdict is in the dataset's attrs
    return outcome.checks


@pytest.mark.parametrize(
    ("scenario", "seed", "verdict"),
    [
        ("rf_leak", 0, "RF-sensitive"),
        ("clean", 1, "RF-insensitive"),
        ("anomalous_metal", 2, "RF-insensitive"),
    ],
)
def test_rf_sensitivity_on_the_simulated_lab(scenario: str, seed: int, verdict: str, tmp_path) -> None:
    checks = _run("rf_sensitivity", scenario, tmp_path, seed)
    assert checks["verdict"] == verdict
    assert checks["summary"].startswith(verdict)
    below, _near, above = checks["points"]  # B = 8, 11, 15 mT around B_c = 11.7 mT
    if scenario == "rf_leak":
        # RF heats the electrons: R rises below B_c (superconducting side), falls above it
        assert below["verdict"] == "RF-sensitive" and above["verdict"] == "RF-sensitive"
        assert below["dlogR_dlogP"] > 0.05 and above["dlogR_dlogP"] < 0
        strongest = below["levels"][-1]
        assert strongest["P_dBm"] == -20.0 and strongest["dR_over_R"] > 0.3
        assert strongest["significance_sigma"] > 50
    else:
        assert checks["max_abs_dR_over_R"] < 0.01
        assert checks["max_significance_sigma"] < 5


def test_excitation_check_on_the_clean_sample(tmp_path) -> None:
    checks = _run("excitation_check", "clean", tmp_path, seed=3)
    # ohmic at 1 nA at the lowest temperature; the largest currents heat the electrons
    assert checks["verdict"] == "self-heating"
    assert checks["ohmic_up_to_A"][0]["I_A"] >= 1e-9
    h = checks["heating"]
    assert h["sigma_A_W_per_K4"] == pytest.approx(1e-8, rel=0.1)  # SampleParams.sigma_A
    assert h["power_law_exponent"] == pytest.approx(1.0, abs=0.15)
    assert checks["frequency_agreement"]["disagree"] is False
    assert checks["max_out_of_phase"] < 0.01

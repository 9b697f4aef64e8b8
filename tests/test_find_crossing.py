"""find_crossing, the adaptive search for the critical point (issue 15), and the fit it rests on.

- The scattered-readings scaling fit on sets the tests make with other scaling functions than the
  simulator's (tanh, a polynomial in ln R, the logistic), at 0.2-3 % noise, with and without a drift of
  B_c with T, and with excitation-heated readings at the low end: B_c within 1 % and z·ν within 10 %,
  and the truth inside 2σ of the reported errors in >= 90 % of the sets.
- The search on the simulated lab (clean and drifting, several seeds): B_c within 1 %, z·ν within 10 %
  in at least 4x less fridge time (the simulated clock's, not wall time) than the stepped field_isotherms
  estimate; its decisions in the run and the log; ``analyze crossing`` reads its dataset; a budget stops
  it; ``estimate`` gives its fridge time.
- Safety from the emulators' command logs: every field target, rate and heater setpoint the search
  sends is within the station's limits and inside what the plan declared; a plan beyond a tighter
  station's limits is refused before anything is sent.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import STATION
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_continuous_safety import check_magnet_log
from test_safety_properties import LAKESHORE_RANGES, FieldSampler, number

import qbs_lab
from qbs_lab.actuators import check_plan
from qbs_lab.analysis.scattered import fit_scattered
from qbs_lab.interrupt import GuardedClock, StopRequest
from qbs_lab.procedure import ProcedureError, load_procedure, parameters_from_dict
from qbs_lab.runner import Runner
from qbs_lab.sim import SimLab
from qbs_lab.station import load_station

CONFIG = load_station(STATION)
PROC = load_procedure("find_crossing")
ENTRY = Path(sys.executable).parent / "qbs-lab"

B_C, ZNU = 0.0117, 1.3


# -- the fit, on sets made here ---------------------------------------------------------------------
def scattered_set(
    seed: int, noise: float, form: str, drift: float = 0.0, n: int = 1500, heated: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readings at random (B, T) in the scaling window, R from one of three scaling functions."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(0.05 if heated else 0.08, 0.25, n)
    center = B_C * (1 + drift * T)
    B = center + rng.uniform(-1, 1, n) * 0.1 * B_C * (T / 0.12) ** (1 / ZNU)
    T_e = (T**4 + 2e-5) ** 0.25 if heated else T  # heated: ~0.07 K at the lowest T, T above 0.15 K
    x = (B - center) / B_C * T_e ** (-1 / ZNU)
    if form == "logistic":
        R = 13000 / (1 + (13000 / 6450 - 1) * np.exp(-2 * x))
    elif form == "tanh":
        R = 6450 * np.exp(1.5 * np.tanh(2 * x))
    else:
        R = 6450 * np.exp(2 * x + 0.3 * (2 * x) ** 2 - 0.1 * (2 * x) ** 3)
    return B, T, R * (1 + noise * rng.standard_normal(n))


@pytest.mark.parametrize("form", ["logistic", "tanh", "polynomial"])
@pytest.mark.parametrize("noise", [0.002, 0.01, 0.03])
def test_the_scattered_fit_finds_the_critical_point_with_errors_that_cover_it(
    form: str, noise: float
) -> None:
    hits = {"B_c": 0, "z_nu": 0}
    sets = 0
    for drift in (0.0, 0.3):
        for seed in range(6):
            B, T, R = scattered_set(seed, noise, form, drift)
            fit = fit_scattered(B, T, R, B_c0=0.95 * B_C)
            assert fit.status == "ok", fit.reason
            assert abs(fit.B_c / B_C - 1) < 0.01, (drift, seed, fit.B_c)
            assert abs(fit.z_nu / ZNU - 1) < 0.10, (drift, seed, fit.z_nu)
            hits["B_c"] += abs(fit.B_c - B_C) <= 2 * fit.B_c_err
            hits["z_nu"] += abs(fit.z_nu - ZNU) <= 2 * fit.z_nu_err
            sets += 1
    for key, n in hits.items():
        assert n >= 0.9 * sets, f"{key}: truth within 2σ in {n} of {sets} sets"


def test_the_fit_leaves_out_heated_readings_at_the_low_end() -> None:
    B, T, R = scattered_set(1, 0.002, "tanh", heated=True)
    fit = fit_scattered(B, T, R, B_c0=0.95 * B_C)
    plain = fit_scattered(B, T, R, B_c0=0.95 * B_C, trim_low_T=False)
    assert 0.06 < fit.T_cut < 0.15, fit.T_cut
    assert abs(fit.z_nu / ZNU - 1) < abs(plain.z_nu / ZNU - 1), (fit.z_nu, plain.z_nu)
    assert abs(fit.z_nu - ZNU) <= 2 * fit.z_nu_err


def test_the_fit_says_failed_rather_than_guess_on_too_few_readings() -> None:
    B, T, R = scattered_set(0, 0.01, "tanh", n=8)
    assert fit_scattered(B, T, R, B_c0=B_C).status == "failed"


# -- the search on the simulated lab -----------------------------------------------------------------
@pytest.fixture(scope="module")
def stepped_fridge_time() -> float:
    return qbs_lab.estimate("field_isotherms", sim=True, station=STATION).total


@pytest.mark.parametrize(("scenario", "seed"), [("clean", 0), ("clean", 7), ("drifting", 2), ("drifting", 5)])
def test_find_crossing_pins_the_critical_point_in_a_quarter_of_the_fridge_time(
    tmp_path: Path, scenario: str, seed: int, stepped_fridge_time: float
) -> None:
    run = qbs_lab.run(
        "find_crossing",
        sim=True,
        scenario=scenario,
        seed=seed,
        station=STATION,
        data=tmp_path,
        progress=False,
    )
    assert run.status == "completed"
    ds = run.dataset
    truth = json.loads(ds.attrs["truth"])
    search = json.loads(ds.attrs["search"])
    est = search["estimate"]
    assert abs(est["B_c"] / truth["B_c"] - 1) <= 0.01, est
    assert abs(est["z_nu"] / truth["znu"] - 1) <= 0.10, est
    assert run.fridge_time * 4 <= stepped_fridge_time, (run.fridge_time, stepped_fridge_time)
    # its decisions, in the run and in its log
    assert search["decisions"][0]["what"] == "locate"
    assert all({"did", "estimate", "t_s", "T_mK"} <= set(d) for d in search["decisions"])
    assert search["stopped"]
    log = run.path.with_suffix(".log").read_text()
    assert "search step 2" in log and "search stopped: " in log
    # each stored isotherm on its own field points, the grid otherwise empty
    R = ds["R"].values
    filled = np.isfinite(R)
    assert 0 < filled.sum() < R.size
    assert len({tuple(np.flatnonzero(row)) for row in filled}) == len(filled)


def test_analyze_crossing_reads_a_find_crossing_run(tmp_path: Path) -> None:
    run = qbs_lab.run("find_crossing", sim=True, seed=1, station=STATION, data=tmp_path, progress=False)
    out = subprocess.run(
        [str(ENTRY), "analyze", "crossing", str(run.path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    truth = json.loads(run.dataset.attrs["truth"])
    assert result["isotherms"] >= 3
    assert abs(result["x_c"] / truth["B_c"] - 1) < 0.02, result["x_c"]
    assert result["search"]["B_c"] == pytest.approx(
        json.loads(run.dataset.attrs["search"])["estimate"]["B_c"]
    )
    text = subprocess.run(
        [str(ENTRY), "analyze", "crossing", str(run.path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "adaptive search's own estimate" in text and " mT" in text


def test_a_budget_stops_the_search_and_the_estimate_foresees_the_fridge_time(tmp_path: Path) -> None:
    est = qbs_lab.estimate("find_crossing", sim=True, station=STATION, budget=120.0)
    run = qbs_lab.run("find_crossing", sim=True, station=STATION, data=tmp_path, progress=False, budget=120.0)
    assert run.status == "completed"
    search = json.loads(run.dataset.attrs["search"])
    assert "budget" in search["stopped"]
    phases = json.loads(run.dataset.attrs["phases"])
    assert phases["measure"] + phases["ramp"] + phases["settle"] <= 120.0
    assert est.total == pytest.approx(run.fridge_time, rel=0.05)


def test_find_crossing_is_refused_when_its_parameters_make_no_sense() -> None:
    for bad in ({"temperatures": (0.1,)}, {"temperatures": (0.1, 0.11)}, {"B_stop": 0.001}, {"target": 2.0}):
        params = parameters_from_dict(PROC, bad)
        with pytest.raises(ProcedureError):
            PROC.plan(params)


# -- safety, from what the instruments received -------------------------------------------------------
def heater_commands(lab: SimLab) -> tuple[list[float], list[float]]:
    """Every setpoint [K] and heater range [A] the fridge's sample heater (output 0) received."""
    setpoints, ranges = [], []
    for c in lab.command_log("fridge"):
        header = c.header.upper()
        if header in ("SETP", "RANGE") and c.args and number(c, 0) == 0:
            if header == "SETP":
                setpoints.append(number(c, 1))
            else:
                ranges.append(LAKESHORE_RANGES[int(number(c, 1))])
    return setpoints, ranges


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B_start=st.floats(0.004, 0.009),
    width=st.floats(0.006, 0.014),
    sweep_rate=st.floats(1e-4, 2e-3),
    scan_rate=st.floats(3e-4, 2e-3),
    T_hi=st.floats(0.15, 0.3),
    seed=st.integers(0, 50),
)
def test_every_adaptive_setpoint_stays_inside_the_limits_and_the_plan(
    B_start: float, width: float, sweep_rate: float, scan_rate: float, T_hi: float, seed: int
) -> None:
    params = parameters_from_dict(
        PROC,
        {
            "B_start": B_start,
            "B_stop": B_start + width,
            "sweep_rate": sweep_rate,
            "scan_rate": scan_rate,
            "temperatures": (0.06, T_hi),
            "budget": 150.0,
        },
    )
    plan = PROC.plan(params)
    assert check_plan(plan, CONFIG) == []
    with SimLab.from_station(STATION, seed=seed) as lab:
        emulator = lab.emulator("magnet")
        power_on = emulator.field_units, emulator.ramp_rate_units
        sampler = FieldSampler(lab)
        with CONFIG.connect(lab=lab, clock=GuardedClock(sampler, StopRequest())) as station:
            result = Runner(plan, station).run()
        assert result.status == "completed", result.message
        rates = check_magnet_log(lab, sampler.samples, power_on)
        setpoints, ranges = heater_commands(lab)
    # the rates are the plan's two and the station's own (moves, parking); nothing else
    for r in rates:
        assert any(
            math.isclose(r, want, rel_tol=1e-6) for want in (sweep_rate, scan_rate, CONFIG.magnet.max_rate)
        )
    # the field only inside the plan's range (and 0 T, parked), the heater below the plan's highest
    targets = [s for _, s, _ in sampler.samples]
    inside = [b for b in targets if abs(b) > 1e-9]
    assert min(inside) >= min(B_start, 0.0) - 1e-9 and max(inside) <= B_start + width + 1e-9
    assert setpoints and max(setpoints) <= plan.search.T_set_max + 1e-9  # type: ignore[union-attr]
    assert max(setpoints) <= CONFIG.thermometry.max_temperature
    assert max(ranges) <= CONFIG.thermometry.max_heater_range


def test_a_search_beyond_a_tighter_station_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    text = STATION.read_text()
    tight = tmp_path / "tight.yaml"
    tight.write_text(
        text.replace("max_field: 0.1 ", "max_field: 0.015 ").replace(
            "max_temperature: 1.5", "max_temperature: 0.2"
        )
    )
    config = load_station(tight)
    assert config.magnet.max_field == 0.015 and config.thermometry.max_temperature == 0.2
    problems = check_plan(PROC.plan(PROC.parameters()), config)
    assert any(p.startswith("B = ") for p in problems), problems
    assert any(p.startswith("T = ") for p in problems), problems
    out = subprocess.run(
        [
            str(ENTRY),
            "run",
            "find_crossing",
            "--sim",
            "--station",
            str(tight),
            "--data",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "limit" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").rglob("*.zarr"))


def test_a_ctrl_c_parks_keeps_the_readings_and_resume_finishes_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_cli_run import ctrl_c_at

    data = tmp_path / "data"
    with ctrl_c_at(120.0, monkeypatch) as fired:
        run = qbs_lab.run("find_crossing", sim=True, seed=3, station=STATION, data=data, progress=False)
    assert "fired" in fired
    assert run.status == "interrupted"
    assert run.left == "gate 0 V, magnet 0 T (driven), heater off, RF off"
    before = int(np.isfinite(run.dataset["R"].values).sum())
    assert before > 0  # the bands measured so far, stored after parking
    passes = sorted((run.path / "sweeps").glob("pass_*.npz"))
    assert len(passes) >= 3
    done = qbs_lab.resume(run.id, data=data, progress=False)
    assert done.status == "completed"
    ds = done.dataset
    est = json.loads(ds.attrs["search"])["estimate"]
    truth = json.loads(ds.attrs["truth"])
    assert abs(est["B_c"] / truth["B_c"] - 1) <= 0.01 and abs(est["z_nu"] / truth["znu"] - 1) <= 0.10
    assert int(np.isfinite(ds["R"].values).sum()) > before
    log = done.path.with_suffix(".log").read_text()
    assert "search resumed with " in log
    # the earlier sweeps' files are kept, the new ones numbered after them
    assert set(passes) <= set((done.path / "sweeps").glob("pass_*.npz"))

"""The runner on the simulated lab (virtual clock): datasets that follow the schema with R matching the
model, snake order, the estimate against the run, stops at safe points (by request, during a long wait,
by a real SIGINT to ``qbs-lab run``), and aborts that leave the gate and magnet parked.

One simulated lab is open at a time: each test closes its station and lab (``sim_station``), and the
tests that go through :func:`start_run` let it open and close its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from conftest import STATION

from qbs_lab import __version__
from qbs_lab.filters import ENBW_FACTOR
from qbs_lab.interrupt import GuardedClock, RunInterrupted, StopRequest
from qbs_lab.plan import Axis, Measurement, Plan, TemperaturePolicy, linspace
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.runner import Runner, RunResult, Trip
from qbs_lab.runs import LabOptions, PlanError, estimate_plan, start_run
from qbs_lab.sim import SimLab
from qbs_lab.sim.emulators.base import LoggedCommand
from qbs_lab.sim.sample import K_B, SampleModel, SampleParams
from qbs_lab.sim.scpi import Pattern
from qbs_lab.station import Station, load_station
from qbs_lab.store.catalog import Catalog
from qbs_lab.store.run_store import RunStore

CONFIG = load_station(STATION)
GATE = CONFIG.gate
GATE_LEVEL = Pattern("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
#: what every point measures, with its units (the schema's list, plus the sample thermometer)
SCHEMA_UNITS = {
    "R": "Ohm",
    "X": "V",
    "Y": "V",
    "I": "A",
    "T_mc": "K",
    "T_sample": "K",
    "B_meas": "T",
    "V_g_meas": "V",
    "I_leak": "A",
    "t": "s",
}
#: the lock-in settings a station run uses: time constant [s] (SettlePolicy default), 24 dB/oct
TAU, STAGES = 0.3, 4
E_N = 6e-9  # V/sqrt(Hz): the simulated lock-in's input noise (qbs_lab/sim/lockin.py)
THERMOMETER_NOISE = 0.002  # relative noise of a Lakeshore 372 reading (qbs_lab/sim/emulators/lakeshore372.py)


# -- helpers ------------------------------------------------------------------------------------------
@contextmanager
def sim_station(
    seed: int, stop: StopRequest, wrap: Callable[[Any], Any] | None = None
) -> Iterator[tuple[SimLab, Station]]:
    """A lab and the reference station on it, its roles waiting on a GuardedClock (``wrap`` may put a
    clock of the test's own between the lab's clock and the guard); both closed afterwards."""
    lab = SimLab.from_station(STATION, seed=seed)
    try:
        inner = wrap(lab.clock) if wrap is not None else lab.clock
        station = CONFIG.connect(lab=lab, clock=GuardedClock(inner, stop))
        try:
            yield lab, station
        finally:
            station.close()
    finally:
        lab.close()


def gate_levels(lab: SimLab) -> list[tuple[float, float]]:
    """(time, level [V]) of every source level the Keithley 2450 received, with the level it held at
    the start (0 V) first."""
    log: list[LoggedCommand] = lab.command_log("gate")
    return [(0.0, 0.0)] + [(c.time, float(c.args[0])) for c in log if GATE_LEVEL.match(c.header) is not None]


def assert_gate_commands_safe(lab: SimLab) -> list[float]:
    """Every gate level within the limits, every step <= max_step and no faster than max_rate."""
    levels = gate_levels(lab)
    assert len(levels) > 1, "the gate never received a level"
    for _, v in levels:
        assert GATE.min <= v <= GATE.max, f"gate level {v} V outside [{GATE.min}, {GATE.max}] V"
    for (t0, v0), (t1, v1) in pairwise(levels):
        assert abs(v1 - v0) <= GATE.max_step + 1e-9, f"gate step {v0} -> {v1} V above {GATE.max_step} V"
        assert t1 - t0 >= abs(v1 - v0) / GATE.max_rate - 1e-9, f"gate step {v0} -> {v1} V too fast"
    return [v for _, v in levels]


def assert_parked(lab: SimLab, result: RunResult) -> None:
    """The lab's physical state is the station's safe state: gate at its safe value, no field, RF off."""
    state = lab.state
    with state.lock:
        state.sync()
        assert state.gate.voltage_setpoint == pytest.approx(GATE.safe_value, abs=1e-9)
        assert state.gate.output_voltage() == pytest.approx(GATE.safe_value, abs=1e-9)
        assert state.magnet.magnet_field() == pytest.approx(0.0, abs=1e-6)
        assert state.magnet.field() == pytest.approx(0.0, abs=1e-6)
        assert not state.rf.output_on
    assert result.park_failures == []
    assert result.phases["park"] > 0


def model_resistance(model: SampleModel, V_g: float, B: float, T: float, I: float) -> float:
    """R of the model at gate voltage, field and bath temperature, with the electrons heated by the
    measured excitation I (self-consistent: R sets I^2 R, which sets T_e)."""
    R = model.resistance(V_g, B, T)
    for _ in range(4):
        R = model.resistance(V_g, B, model.electron_temperature(T, I * I * R, None))
    return R


def store_for(runner: Runner, tmp_path: Path) -> RunStore:
    store = RunStore.for_plan(tmp_path / "run.zarr", runner.plan, runner.variable_attrs())
    runner.store = store
    return store


def run_order_flat(plan: Plan) -> np.ndarray:
    """The flat (C-order) grid position of each point, in run order."""
    return np.ravel_multi_index(tuple(plan.order().T), plan.shape)


def opts(tmp_path: Path, seed: int) -> LabOptions:
    return LabOptions(station=STATION, sim=True, seed=seed, data_dir=tmp_path / "data")


# -- a 2-D run through start_run: the schema and the physics ----------------------------------------------
ISOTHERMS = ["temperatures=0.06,0.12,0.24", "num=9", "V_g=15"]
ISOTHERMS_SEED = 3


@pytest.fixture(scope="module")
def isotherms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any, xr.Dataset]:
    """field_isotherms on 3 temperatures x 9 fields, run once for the tests below."""
    tmp = tmp_path_factory.mktemp("isotherms")
    proc = load_procedure("field_isotherms")
    params = parse_settings(proc, ISOTHERMS)
    outcome = start_run(proc, params, opts(tmp, ISOTHERMS_SEED), progress=False)
    ds = xr.open_zarr(outcome.path).load()
    return proc, params, outcome, ds


def test_2d_run_dataset_follows_the_schema(isotherms: tuple[Any, Any, Any, xr.Dataset]) -> None:
    _, params, outcome, ds = isotherms
    assert outcome.result.status == "completed" and outcome.result.done == 27
    # where it lives: data/<date>/<run_id>-<procedure>.zarr, and the catalog knows it
    assert outcome.path.name == f"{outcome.run_id}-field_isotherms.zarr"
    assert datetime.fromisoformat(outcome.path.parent.name)  # a YYYY-MM-DD folder
    record = Catalog(outcome.path.parent.parent).get(outcome.run_id)
    assert (record.status, record.done, record.points, record.path) == (
        "completed",
        27,
        27,
        str(outcome.path),
    )

    # dimensions outermost first, coordinates in SI with CF attributes
    assert ds["R"].dims == ("T", "B")
    assert dict(ds.sizes) == {"T": 3, "B": 9}
    assert ds["T"].values.tolist() == [0.06, 0.12, 0.24]
    assert ds["B"].values == pytest.approx(np.linspace(0.006, 0.018, 9))
    assert ds["T"].attrs == {"units": "K", "long_name": "temperature setpoint"}
    assert ds["B"].attrs == {"units": "T", "long_name": "magnetic field"}
    assert float(ds["V_g"]) == 15.0 and ds["V_g"].dims == ()  # the fixed gate: a scalar coordinate
    assert ds["V_g"].attrs == {"units": "V", "long_name": "gate voltage"}

    # every variable, with units and a long name, and no point left unmeasured
    assert set(ds.data_vars) == set(SCHEMA_UNITS)
    for name, units in SCHEMA_UNITS.items():
        assert ds[name].dims == ("T", "B"), name
        assert ds[name].attrs["units"] == units, name
        assert len(ds[name].attrs["long_name"]) > 3, name
        assert np.isfinite(ds[name].values).all(), f"{name} has unmeasured points"

    # global attributes
    a = ds.attrs
    assert a["run_id"] == outcome.run_id and a["procedure"] == "field_isotherms"
    assert a["status"] == "completed" and a["message"] == ""
    parameters = json.loads(a["parameters"])
    assert parameters == json.loads(json.dumps(dataclasses.asdict(params)))
    assert parameters["temperatures"] == [0.06, 0.12, 0.24] and parameters["num"] == 9
    assert parameters["V_g"] == 15.0 and parameters["snake"] is True
    station = json.loads(a["station"])
    assert Path(station["file"]).resolve() == STATION
    assert set(station["instruments"]) == {"lockin", "gate", "magnet", "fridge", "rf"}
    assert json.loads(a["sample"]) == CONFIG.sample
    assert json.loads(a["sample"])["name"] == "GSn-A7"
    assert json.loads(a["software"])["qbs_lab"] == __version__
    start, end = datetime.fromisoformat(a["start_time"]), datetime.fromisoformat(a["end_time"])
    assert start <= end
    assert json.loads(a["sim"]) == {"scenario": "clean", "seed": ISOTHERMS_SEED}
    truth = json.loads(a["truth"])
    expected = SampleModel(SampleParams()).truth(15.0)
    assert truth["B_c"] == pytest.approx(expected["B_c"], rel=1e-12)
    assert truth["R_c"] == pytest.approx(expected["R_c"], rel=1e-12)
    assert truth["B_c"] == pytest.approx(0.0117, abs=1e-4) and truth["znu"] == 1.3
    assert json.loads(a["park_failures"]) == []
    stabilization = json.loads(a["stabilization"])
    assert [(s["T"], s["outcome"]) for s in stabilization] == [
        (0.06, "stable"),
        (0.12, "stable"),
        (0.24, "stable"),
    ]
    assert all(s["waited_s"] >= 60.0 for s in stabilization)  # at least the hold time
    phases = json.loads(a["phases"])
    assert sum(phases.values()) == pytest.approx(outcome.result.duration)


def test_2d_run_times_follow_the_run_order(isotherms: tuple[Any, Any, Any, xr.Dataset]) -> None:
    proc, params, outcome, ds = isotherms
    plan = proc.plan(params)
    t = ds["t"].values.ravel()[run_order_flat(plan)]
    assert np.all(np.diff(t) > 0), "t does not increase in run order"
    assert t[0] > 60.0  # the first point waits for the first temperature to hold for 60 s
    # the field runs snake-wise: up at 60 mK, down at 120 mK, up at 240 mK
    assert np.all(np.diff(ds["t"].values[0]) > 0)
    assert np.all(np.diff(ds["t"].values[1]) < 0)
    assert np.all(np.diff(ds["t"].values[2]) > 0)
    assert outcome.result.point_times == pytest.approx(t.tolist())


def test_2d_run_measures_the_conditions_it_set(isotherms: tuple[Any, Any, Any, xr.Dataset]) -> None:
    _, _, _, ds = isotherms
    B = np.broadcast_to(ds["B"].values, (3, 9))
    T = np.broadcast_to(ds["T"].values[:, None], (3, 9))
    assert ds["B_meas"].values == pytest.approx(B, abs=1e-6)  # the magnet holds at each target
    assert ds["V_g_meas"].values == pytest.approx(15.0, abs=2e-3)  # the 2450's readback noise
    # stable within the 2 % band, read with 0.2 % thermometer noise: well within 3 %
    assert ds["T_sample"].values == pytest.approx(T, rel=0.03)
    assert ds["T_mc"].values == pytest.approx(T, rel=0.03)
    R = ds["R"].values
    # the excitation: 10 mV rms through the 10 MOhm bias resistor and the sample
    assert ds["I"].values == pytest.approx(0.01 / (10e6 + R), rel=1e-3)
    assert np.abs(ds["I_leak"].values).max() < 1e-11  # 15 V on 1e13 Ohm of oxide: 1.5 pA
    assert np.abs(ds["Y"].values).max() < 0.01 * np.abs(ds["X"].values).max()
    assert ds["X"].values == pytest.approx(R * ds["I"].values, rel=1e-9)  # R = X / I


def test_2d_run_r_matches_the_model_within_noise(isotherms: tuple[Any, Any, Any, xr.Dataset]) -> None:
    """R against the sample model evaluated at what was measured at that point (T_sample, B_meas,
    I) and the gate's setpoint (its readback only adds the source meter's noise).

    Error budget per point, 1 sigma:
    - lock-in noise on X: sqrt(e_n^2 + 4 k_B T R) * sqrt(ENBW), ENBW = 5/64 / tau for 24 dB/oct, over
      I ~ 1 nA: about 3 Ohm here;
    - the thermometer's 0.2 % reading noise, through dR/dT of the model at that point;
    and, not random: the lock-in filter settled to 1e-3 of the step from the previous point in run
    order. A point passes within 5 sigma plus that residual: a wrong field, gate, temperature, current
    or bias resistor in the chain is off by tens to thousands of Ohm, far outside.
    """
    proc, params, _, ds = isotherms
    model = SampleModel(SampleParams())
    plan = proc.plan(params)
    run = run_order_flat(plan)
    R = ds["R"].values.ravel()
    T = ds["T_sample"].values.ravel()
    B = ds["B_meas"].values.ravel()
    I = ds["I"].values.ravel()
    V_g = float(ds["V_g"])
    expected = np.array([model_resistance(model, V_g, b, t, i) for b, t, i in zip(B, T, I, strict=True)])
    noise_v = np.sqrt(E_N**2 + 4 * K_B * T * R) * math.sqrt(ENBW_FACTOR[STAGES] / TAU)
    dT = THERMOMETER_NOISE * T
    sens = np.array(
        [
            abs(model_resistance(model, V_g, b, t + d, i) - model_resistance(model, V_g, b, t - d, i)) / 2
            for b, t, d, i in zip(B, T, dT, I, strict=True)
        ]
    )
    sigma = np.hypot(noise_v / I, sens)
    previous = np.empty_like(R)
    previous[run] = np.concatenate(([R[run[0]]], R[run[:-1]]))
    residual = 1e-3 * np.abs(R - previous)
    deviation = np.abs(R - expected)
    assert np.all(deviation <= 5 * sigma + residual), (
        f"worst point: {np.max(deviation - 5 * sigma - residual):.3g} Ohm beyond the budget;"
        f" deviations {np.round(deviation, 1)}"
    )
    # and no bias: the normalized deviations scatter as noise (rms about 1, not several)
    z = (R - expected) / sigma
    assert np.sqrt(np.mean(z**2)) < 2.0
    # a coarse sanity check of the physics: R rises with B through R_c near B_c at every temperature
    R2 = ds["R"].values
    assert np.all(np.diff(R2, axis=1) > 0)
    assert R2.min() > 100 and R2.max() < 12_000


# -- a 3-D run: dims, every point, snake order ------------------------------------------------------------
@pytest.mark.parametrize(
    ("V_num", "snake"),
    [(3, True), (3, False), (2, True)],
    ids=["3-gates-snake", "3-gates-c-order", "2-gates-snake"],
)
def test_3d_run_measures_every_point_in_the_plans_order(tmp_path: Path, V_num: int, snake: bool) -> None:
    proc = load_procedure("phase_diagram")
    params = parse_settings(
        proc,
        [
            "temperatures=0.06,0.12",
            f"V_num={V_num}",
            "V_start=10",
            "V_stop=20",
            "B_num=5",
            "B_stop=0.02",
            f"snake={snake}",
            "hold=30",
        ],
    )
    plan = proc.plan(params)
    outcome = start_run(proc, params, opts(tmp_path, 5), progress=False, estimate=False)
    assert outcome.result.status == "completed"
    ds = xr.open_zarr(outcome.path).load()
    assert ds["R"].dims == ("T", "V_g", "B")
    assert dict(ds.sizes) == {"T": 2, "V_g": V_num, "B": 5}
    assert ds["V_g"].attrs["units"] == "V" and ds["B"].attrs["units"] == "T" and ds["T"].attrs["units"] == "K"
    for name in SCHEMA_UNITS:
        assert np.isfinite(ds[name].values).all(), name
    # the order of measurement over the grid is the plan's order: snake lines reversed, or C order
    measured_order = np.argsort(ds["t"].values.ravel(), kind="stable")
    assert measured_order.tolist() == run_order_flat(plan).tolist()
    if not snake:
        assert measured_order.tolist() == list(range(plan.size))
    # the instruments went where the grid says, in that order
    B_meas = ds["B_meas"].values.ravel()[measured_order]
    V_meas = ds["V_g_meas"].values.ravel()[measured_order]
    grid = plan.order()
    assert B_meas == pytest.approx(np.asarray(plan.axes[2].values)[grid[:, 2]], abs=1e-6)
    assert V_meas == pytest.approx(np.asarray(plan.axes[1].values)[grid[:, 1]], abs=2e-3)
    if snake:
        # the point of snake: between consecutive points the magnet moves by at most one field step
        # and the gate by at most one gate step; nothing ramps back across its range
        B_step = 0.02 / 4
        V_step = 10.0 / (V_num - 1)
        assert np.abs(np.diff(B_meas)).max() <= B_step + 1e-5, np.round(B_meas, 4)
        assert np.abs(np.diff(V_meas)).max() <= V_step + 1e-2, np.round(V_meas, 2)


def test_a_line_that_starts_far_from_where_the_last_one_ended_is_measured(tmp_path: Path) -> None:
    """gate_isotherms with snake=false: each isotherm ends at 25 V, superconducting at 60 mK (R of a
    few Ohm, so the lock-in autoranges down to nanovolts), and the next starts back at 5 V near the
    Dirac point (R of tens of kOhm, four decades more). The lock-in must range up to it and measure."""
    proc = load_procedure("gate_isotherms")
    params = parse_settings(proc, ["temperatures=0.06,0.12", "num=11", "snake=false", "hold=30"])
    outcome = start_run(proc, params, opts(tmp_path, 9), progress=False, estimate=False)
    assert outcome.result.status == "completed", outcome.result.message
    ds = xr.open_zarr(outcome.path).load()
    assert np.isfinite(ds["R"].values).all()
    assert np.argsort(ds["t"].values.ravel()).tolist() == list(range(22))  # C order: no snake
    R = ds["R"].values
    assert R[1, 0] > 1e4 and R[0, -1] < 0.01 * R[1, 0]  # the jump the lock-in had to follow


# -- the estimate --------------------------------------------------------------------------------------
def test_estimate_is_within_5_percent_of_a_run_with_another_seed(tmp_path: Path) -> None:
    proc = load_procedure("field_isotherms")
    params = parse_settings(proc, ["temperatures=0.06,0.15", "num=11"])
    plan = proc.plan(params)
    est = estimate_plan(plan, CONFIG, seed=11)
    assert est.points == 22 and len(est.schedule) == 22
    assert set(est.phases) == {"ramp", "stabilize", "settle", "measure", "suspended", "park"}
    assert est.phases["suspended"] == 0.0  # nothing trips on the twin
    assert all(v > 0 for k, v in est.phases.items() if k != "suspended")
    # two temperatures held 60 s each, 21 field steps of 1.2 mT at 2 mT/s at least
    assert est.phases["stabilize"] >= 120.0
    assert est.phases["ramp"] >= 20 * 0.0012 / 0.002
    outcome = start_run(proc, params, opts(tmp_path, 12), progress=False, estimate=False)
    actual = outcome.result.duration
    assert outcome.result.status == "completed"
    assert abs(est.total - actual) <= 0.05 * actual, (est.total, actual)
    # the schedule each point follows, too: the last point within 5 % of when it was taken
    assert est.schedule[-1] == pytest.approx(outcome.result.point_times[-1], rel=0.05)


def test_a_plan_outside_the_limits_is_refused_before_anything_happens(tmp_path: Path) -> None:
    """Limits are checked before any lab, twin, catalog row or store exists. A lab of the test's own is
    open meanwhile: only one lab may be open per process, so had the estimate made its twin, or the run
    its lab, they would have failed for that instead (a different message)."""
    proc = load_procedure("gate_sweep")
    params = parse_settings(proc, ["V_stop=45", "num=10"])
    plan = proc.plan(params)
    data = tmp_path / "data"
    with SimLab.from_station(STATION, seed=0):
        with pytest.raises(PlanError) as info:
            estimate_plan(plan, CONFIG)
        assert len(info.value.problems) == 1
        assert "outside the station's limits: V_g = 45" in info.value.problems[0]
        with pytest.raises(PlanError) as info:
            start_run(proc, params, opts(tmp_path, 0), progress=False)
        assert len(info.value.problems) == 1
        assert "outside the station's limits: V_g = 45" in info.value.problems[0]
    assert not data.exists() or list(data.rglob("*")) == []
    assert Catalog(data).runs() == []


# -- stops at safe points -----------------------------------------------------------------------------
def test_a_stop_request_ends_the_run_interrupted_with_every_point_kept_and_the_lab_parked(
    tmp_path: Path,
) -> None:
    """Gate swept 0 -> 20 V and back (snake) at two fields with the RF on; a stop at point 12 (B =
    30 mT, V_g = 12.5 V) ends the run there, keeps points 0..12 and parks gate, magnet and RF. (Both
    fields are above B_c at every gate voltage: the sample stays normal, R within a factor of a few.)"""
    k_stop = 12
    plan = Plan(
        "ctrl_c",
        axes=(Axis("B", (0.02, 0.03)), Axis("V_g", linspace(0.0, 20.0, 9), snake=True)),
        fixed={"P_rf": -30.0},
    )
    stop = StopRequest()
    with sim_station(seed=2, stop=stop) as (lab, station):
        rf_on: list[bool] = []
        where: list[tuple[float, float]] = []

        def subscriber(k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
            rf_on.append(lab.state.rf.output_on)
            where.append((lab.state.gate.output_voltage(), lab.state.magnet.magnet_field()))
            if k == k_stop:
                stop.set()

        runner = Runner(plan, station, stop=stop, subscribers=[subscriber])
        store = store_for(runner, tmp_path)
        result = runner.run()

        assert result.status == "interrupted", result.message
        assert result.done == k_stop + 1
        assert "stop" in (result.message or "")
        assert all(rf_on) and len(rf_on) == k_stop + 1  # the RF was on while measuring
        assert where[-1] == pytest.approx((12.5, 0.03), abs=1e-6)  # where it was when stopped
        measured = RunStore.open(store.path).measured()
        run = run_order_flat(plan)
        assert int(measured.sum()) == k_stop + 1
        assert measured.ravel()[run[: k_stop + 1]].all()  # exactly the points up to k
        assert_parked(lab, result)
        levels = assert_gate_commands_safe(lab)
        assert max(levels) == pytest.approx(20.0) and levels[-1] == GATE.safe_value
        ds = xr.open_zarr(store.path)
        assert np.isfinite(ds["R"].values).sum() == k_stop + 1


class TriggerClock:
    """The lab's clock, with a stop that fires on its own once ``after`` seconds of sleeps have passed
    since it was armed: a Ctrl-C that lands while the runner waits, not between points."""

    def __init__(self, clock: Any, stop: StopRequest) -> None:
        self.clock, self.stop = clock, stop
        self.armed_at: float | None = None
        self.fired_at: float | None = None
        self.after = 0.0

    def arm(self, after: float) -> None:
        self.armed_at, self.after = self.clock.now(), after

    def now(self) -> float:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        if self.armed_at is not None and self.fired_at is None and self.now() - self.armed_at >= self.after:
            self.fired_at = self.now()
            self.stop.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.clock, name)


def test_a_stop_during_a_temperature_wait_is_honoured_at_the_next_sleep(tmp_path: Path) -> None:
    plan = Plan(
        "wait",
        axes=(Axis("T", (0.06, 0.2)), Axis("B", linspace(0.006, 0.018, 3), snake=True)),
        fixed={"V_g": 15.0},
        temperature_policy=TemperaturePolicy(hold=60.0, poll=5.0),
    )
    stop = StopRequest()
    clocks: list[TriggerClock] = []

    def wrap(clock: Any) -> TriggerClock:
        clocks.append(TriggerClock(clock, stop))
        return clocks[0]

    with sim_station(seed=4, stop=stop, wrap=wrap) as (lab, station):
        trigger = clocks[0]

        def subscriber(k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
            if k == 2:  # the last point at 60 mK: the stop comes 20 s into the wait for 200 mK
                trigger.arm(after=20.0)

        runner = Runner(plan, station, stop=stop, subscribers=[subscriber])
        store_for(runner, tmp_path)
        result = runner.run()
        assert trigger.fired_at is not None
        assert result.status == "interrupted"
        assert result.done == 3
        # only the first temperature stabilized; the second was abandoned mid-wait, not waited out
        assert [(T, o) for T, _, o in result.stabilization] == [(0.06, "stable")]
        park_start = lab.clock.now() - result.phases["park"]
        # honoured at the next sleep: within one poll of the thermometer (5 s) plus its I/O
        assert park_start - trigger.fired_at <= 5.0 + 1.0
        # the sample was still far from 200 mK when the run stopped (no waiting it out)
        assert lab.state.fridge.T_sample < 0.2 * 0.98
        assert_parked(lab, result)


def test_sigint_to_qbs_lab_run_stops_at_a_safe_point_and_keeps_the_data(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT) to ``qbs-lab run`` once measuring has begun: exit 130, the run marked
    interrupted in the catalog and the dataset, the measured points kept, and how to resume said."""
    data = tmp_path / "data"
    settings = ["num=60", "temperatures=0.05:0.25:9"]  # 540 points: seconds of wall time
    cmd = [sys.executable, "-m", "qbs_lab.cli", "run", "field_isotherms", "--sim", "--station", str(STATION)]
    cmd += ["--data", str(data), "--no-progress"]
    for s in settings:
        cmd += ["--set", s]
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as fout, open(err, "w") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, text=True)
        try:
            # measuring has begun once the first line's chunk of t is on disk
            deadline = time.monotonic() + 120
            while not list(data.glob("*/*.zarr/t/[0-9]*")):
                assert proc.poll() is None, f"qbs-lab run ended first: {err.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "the run never began measuring"
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stdout, stderr = out.read_text(), err.read_text()
    assert code == 130, stderr[-2000:]
    (record,) = Catalog(data).runs()
    assert record.status == "interrupted"
    (path,) = data.glob("*/*.zarr")
    ds = xr.open_zarr(path)
    assert ds.attrs["status"] == "interrupted"
    assert "stop" in ds.attrs["message"]
    assert json.loads(ds.attrs["park_failures"]) == []
    assert json.loads(ds.attrs["phases"])["park"] > 0
    measured = np.isfinite(ds["t"].values)
    done = int(measured.sum())
    assert 0 < done < 540, done  # some points, not all
    assert record.done == done
    # the kept points are the first ones in run order, with no gaps
    plan = load_procedure("field_isotherms").plan(parse_settings(load_procedure("field_isotherms"), settings))
    run = run_order_flat(plan)
    assert measured.ravel()[run[:done]].all()
    assert np.isfinite(ds["R"].values).sum() == done
    assert f"run {record.run_id} interrupted" in stdout
    assert f"qbs-lab resume {record.run_id}" in stderr
    assert "stopping at the next safe point" in stderr
    assert "Traceback" not in stderr


# -- aborts ---------------------------------------------------------------------------------------------
def test_a_temperature_that_cannot_be_reached_aborts_with_the_gate_and_magnet_parked(tmp_path: Path) -> None:
    """5 mK is below the fridge's 15 mK base: with on_timeout='abort' the run ends aborted."""
    plan = Plan(
        "too_cold",
        axes=(Axis("T", (0.005, 0.05)),),
        fixed={"V_g": 5.0, "B": 0.01},  # applied before the first point: both must be parked
        temperature_policy=TemperaturePolicy(timeout=120.0, hold=30.0, poll=5.0, on_timeout="abort"),
    )
    stop = StopRequest()
    with sim_station(seed=6, stop=stop) as (lab, station):
        runner = Runner(plan, station, stop=stop)
        store = store_for(runner, tmp_path)
        t0 = lab.clock.now()
        result = runner.run()
        assert result.status == "aborted"
        assert result.done == 0
        msg = result.message or ""
        assert msg.startswith("StabilizationTimeout: ")
        assert "5 mK" in msg and "120 s" in msg and "30 s" in msg
        ((T, waited, outcome),) = result.stabilization
        assert (T, outcome) == (0.005, "timeout")
        assert 120.0 <= waited <= 125.0 + 1.0
        assert lab.clock.now() - t0 < 120.0 + 60.0  # gave up at the timeout, plus parking
        assert lab.state.fridge.T_sample >= 0.015  # indeed unreachable
        assert not RunStore.open(store.path).measured().any()
        assert_parked(lab, result)
        levels = assert_gate_commands_safe(lab)
        assert max(levels) == pytest.approx(5.0)


USER_PROCEDURE = '''
"""A user's own procedure: a field sweep at a temperature the fridge cannot reach, measured anyway."""
from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan, TemperaturePolicy, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    temperatures: tuple[float, ...] = param((0.005, 0.05), "K", "setpoints")
    timeout: float = param(300.0, "s", "give up on a setpoint after this long")


def plan(p: Parameters) -> Plan:
    return Plan(
        "cold_anyway",
        axes=(Axis("T", p.temperatures), Axis("B", linspace(0.012, 0.02, 3), snake=True)),
        fixed={"V_g": 15.0},
        temperature_policy=TemperaturePolicy(timeout=p.timeout, hold=30.0, on_timeout="continue"),
    )
'''


def test_a_temperature_timeout_with_continue_measures_anyway_and_records_it(tmp_path: Path) -> None:
    path = tmp_path / "cold_anyway.py"
    path.write_text(USER_PROCEDURE)
    proc = load_procedure(str(path))
    assert proc.source == str(path.resolve())
    params = parse_settings(proc, [])
    outcome = start_run(proc, params, opts(tmp_path, 7), progress=False, estimate=False)
    result = outcome.result
    assert result.status == "completed" and result.done == 6
    assert [(T, o) for T, _, o in result.stabilization] == [(0.005, "timeout"), (0.05, "stable")]
    assert 300.0 <= result.stabilization[0][1] <= 306.0
    ds = xr.open_zarr(outcome.path).load()
    assert ds.attrs["status"] == "completed" and ds.attrs["procedure"] == "cold_anyway"
    record = json.loads(ds.attrs["stabilization"])
    assert [(r["T"], r["outcome"]) for r in record] == [(0.005, "timeout"), (0.05, "stable")]
    assert 300.0 <= record[0]["waited_s"] <= 306.0
    assert np.isfinite(ds["R"].values).all()
    # the "5 mK" isotherm was measured at what the fridge could do: its base, about 15 mK
    assert ds["T_sample"].sel(T=0.005).values == pytest.approx(0.015, rel=0.05)


def test_gate_leakage_during_a_sweep_aborts_with_the_gate_back_at_zero(tmp_path: Path) -> None:
    """A leakage spike (5 nA, above the 1 nA limit) appears after point 4 of a 0..10 V gate sweep: the
    next ramp step finds it, the gate goes back to 0 V and the run ends aborted with LeakageError."""
    plan = Plan("leaky", axes=(Axis("V_g", linspace(0.0, 10.0, 11)),), fixed={"B": 0.005})
    stop = StopRequest()
    with sim_station(seed=8, stop=stop) as (lab, station):

        def subscriber(k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
            if k == 4:
                lab.state.gate.leak_spike = 5e-9

        runner = Runner(plan, station, stop=stop, subscribers=[subscriber])
        store = store_for(runner, tmp_path)
        result = runner.run()
        assert result.status == "aborted"
        assert (result.message or "").startswith("LeakageError: gate leakage")
        assert "above the limit 1e-09 A" in (result.message or "")
        assert result.done == 5
        measured = RunStore.open(store.path).measured()
        assert measured.tolist() == [True] * 5 + [False] * 6
        assert_parked(lab, result)
        levels = assert_gate_commands_safe(lab)
        # the ramp to 5 V stopped at its first step (4.5 V) and went back to 0 V
        assert max(levels) == pytest.approx(4.5)
        assert levels[-1] == GATE.safe_value
        ds = xr.open_zarr(store.path)
        assert ds["V_g_meas"].values[:5] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0], abs=2e-3)


def test_run_interrupted_is_what_a_guarded_sleep_raises() -> None:
    """The guard itself: a sleep after a stop raises; while parking it does not."""
    stop = StopRequest()
    slept: list[float] = []

    class Clock:
        virtual = True

        def now(self) -> float:
            return sum(slept)

        def sleep(self, seconds: float) -> None:
            slept.append(seconds)

    guard = GuardedClock(Clock(), stop)
    guard.sleep(1.0)
    stop.set()
    with pytest.raises(RunInterrupted):
        guard.sleep(2.0)
    assert slept == [1.0]
    stop.parking = True
    guard.sleep(3.0)
    assert slept == [1.0, 3.0]


class _PauseOnce:
    """A supervisor that trips once, with the pause policy, after the point number ``at``."""

    def __init__(self, at: int) -> None:
        self.at, self.calls, self.tripped = at, 0, False

    def check(self) -> Trip | None:
        self.calls += 1
        if not self.tripped and self.calls == self.at + 1:
            self.tripped = True
            return Trip("test trouble", "pause", lambda: True)
        return None

    def on_error(self, err: Exception) -> Trip | None:
        return None


@pytest.mark.parametrize(("shape", "at", "redo_from"), [((6,), 3, 3), ((2, 4), 6, 4)])
def test_a_recovered_pause_redoes_the_line_or_in_1d_only_the_point(
    shape: tuple[int, ...], at: int, redo_from: int
) -> None:
    """After a pause the current line is measured again from its first point; a 1-D plan is one line of
    slow points (a temperature sweep), so only the tripped point is measured again."""
    sets: list[tuple[str, float]] = []
    names = ("a", "b")[: len(shape)]
    axes = tuple(
        Axis(name, tuple(float(v) for v in range(n)), setter=lambda v, _n=name: sets.append((_n, v)))
        for name, n in zip(names, shape, strict=True)
    )
    plan = Plan("t", axes=axes, measurements=(Measurement("m", lambda: 1.0),), park=False)
    result = Runner(plan, supervisor=_PauseOnce(at)).run()
    assert result.status == "completed" and result.done == plan.size
    (entry,) = result.interruptions
    assert entry["point"] == at and entry["redo_from"] == redo_from and entry["outcome"] == "recovered"
    # the points from the checkpoint to the tripped one were stored again (the tripped one only once)
    assert result.point_times == sorted(result.point_times)
    assert len(result.point_times) == plan.size + (at - redo_from)

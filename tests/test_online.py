"""The online crossing: updated after every completed isotherm, recorded in the run and its log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from qbs_lab.analysis.online import OnlineCrossing, format_update
from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.runs import LabOptions, start_run
from qbs_lab.sim.sample import SampleModel

STATION = Path(__file__).resolve().parents[1] / "station.yaml"


def _feed(online: OnlineCrossing, plan: Plan, R: np.ndarray) -> list[int]:
    """Feed a grid point by point in run order; the run-order numbers after which an update came."""
    after = []
    for k, (i, j) in enumerate(plan.order()):
        before = len(online.updates)
        online(k, (int(i), int(j)), (float(R[i, j]), float(k)))
        if len(online.updates) > before:
            after.append(k)
    return after


def test_updates_come_after_each_completed_isotherm_from_the_second_on() -> None:
    model = SampleModel()
    temps, fields = (0.05, 0.1, 0.2, 0.4), linspace(0.008, 0.016, 21)
    plan = Plan("t", axes=(Axis("T", temps), Axis("B", fields, snake=True)), fixed={"V_g": 15.0})
    rng = np.random.default_rng(1)
    R = np.array([[model.resistance(15.0, b, T) for b in fields] for T in temps])
    R = R + rng.normal(0, 2.0, R.shape)
    online = OnlineCrossing(plan, ("R", "t"))
    after = _feed(online, plan, R)
    assert after == [41, 62, 83]  # the last point of isotherms 2, 3 and 4
    assert [u["isotherms"] for u in online.updates] == [2, 3, 4]
    assert online.updates[0]["znu"] is None  # a collapse needs three isotherms
    truth = model.truth(15.0)
    last = online.updates[-1]
    assert last["verdict"] == "single crossing"
    assert abs(last["x_c"] - truth["B_c"]) < 3 * last["x_c_err"] + 2e-6
    assert abs(last["R_c"] - truth["R_c"]) < 3 * last["R_c_err"] + 2.0
    assert abs(last["znu"] - truth["znu"]) < 0.1 * truth["znu"]
    # error bars do not grow as isotherms come in (the hotter ones add little)
    assert online.updates[-1]["x_c_err"] < 1.2 * online.updates[0]["x_c_err"]
    # one code path: the record holds what analyze crossing reports, with the collapse's verdict
    assert last["collapse"]["status"] == "ok" and last["excluded"] == []
    assert all(
        u["seconds"] >= 0 for u in online.updates
    )  # recorded (its speed: benchmarks/analysis_speed.py)
    json.dumps(online.updates, allow_nan=False)  # JSON-ready, no NaN
    line = format_update(last)
    assert line.startswith("4 isotherms: single crossing; B_c = ") and "z·ν = " in line


def test_only_temperature_over_field_or_gate_plans_get_it() -> None:
    assert OnlineCrossing.applies(Plan("a", axes=(Axis("T", (0.1, 0.2)), Axis("V_g", (1.0, 2.0)))))
    assert not OnlineCrossing.applies(Plan("b", axes=(Axis("B", (0.1, 0.2)), Axis("T", (0.1, 0.2)))))
    assert not OnlineCrossing.applies(Plan("c", axes=(Axis("B", (0.1, 0.2)),)))
    with pytest.raises(ValueError, match="needs dims"):
        OnlineCrossing(Plan("c", axes=(Axis("B", (0.1, 0.2)),)), ("R", "t"))


def test_a_simulated_run_records_every_update_in_the_dataset_and_the_log(tmp_path: Path) -> None:
    proc = load_procedure("field_isotherms")
    params = parse_settings(proc, ["temperatures=0.06,0.12,0.24", "num=13"])
    opts = LabOptions(station=STATION, sim=True, seed=4, data_dir=tmp_path)
    outcome = start_run(proc, params, opts, progress=False)
    assert outcome.result.status == "completed"
    ds = xr.open_zarr(outcome.path)
    stored = json.loads(ds.attrs["online"])
    assert stored == outcome.online and [u["isotherms"] for u in stored] == [2, 3]
    truth = json.loads(ds.attrs["truth"])
    assert abs(stored[-1]["x_c"] - truth["B_c"]) < 0.01 * truth["B_c"]
    log = outcome.path.with_suffix(".log").read_text()
    assert log.count("crossing after ") == 2
    assert "crossing after 3 isotherms: single crossing" in log

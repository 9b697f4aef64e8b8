"""qbs-lab analyze crossing: JSON keys, figures against the model's truth, plots, clear input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from qbs_lab.sim.sample import SampleModel

CLI = [sys.executable, "-m", "qbs_lab.cli", "analyze", "crossing"]
KEYS = ["x_c", "x_c_err", "R_c", "R_c_err", "znu", "znu_err", "quality", "verdict", "crossings"]


def _dataset(noise: float = 15.0, seed: int = 1) -> tuple[xr.Dataset, dict]:
    model = SampleModel()
    B = np.linspace(0.006, 0.018, 41)  # T
    T = np.array([0.05, 0.08, 0.12, 0.2, 0.32])  # K
    rng = np.random.default_rng(seed)
    R = np.array([[model.resistance(15.0, b, t) for b in B] for t in T]) + rng.normal(0, noise, (5, 41))
    R[-1, 30:] = np.nan  # the last isotherm is still being measured
    ds = xr.Dataset(
        {"R": (("T", "B"), R, {"units": "Ohm", "long_name": "resistance"})},
        coords={"T": ("T", T, {"units": "K"}), "B": ("B", B, {"units": "T"})},
    )
    return ds, model.truth(15.0)


@pytest.mark.parametrize("kind", ["nc", "zarr"])
def test_json_has_exactly_the_keys_and_finds_the_truth(tmp_path: Path, kind: str) -> None:
    ds, truth = _dataset()
    path = tmp_path / f"run.{kind}"
    ds.to_netcdf(path) if kind == "nc" else ds.to_zarr(path)
    proc = subprocess.run([*CLI, str(path), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result)[: len(KEYS)] == KEYS  # the keys of before, unchanged and first; new ones after
    assert result["excluded"] == [] and result["collapse"]["status"] == "ok"
    assert result["verdict"] == "single crossing"
    assert abs(result["x_c"] - truth["B_c"]) < 3 * result["x_c_err"] + 2e-5  # T
    assert abs(result["R_c"] - truth["R_c"]) < 3 * result["R_c_err"] + 20  # Ohm
    assert result["znu"] == pytest.approx(truth["znu"], rel=0.1)
    assert 0.2 < result["quality"] < 5
    assert {"T1", "T2", "x", "R", "x_err"} == set(result["crossings"][0])
    for name in ("run-crossing.png", "run-collapse.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_the_report_is_readable_and_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    ds, _ = _dataset()
    good = tmp_path / "run.nc"
    ds.to_netcdf(good)
    proc = subprocess.run([*CLI, str(good)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "verdict: single crossing" in proc.stdout and "mT (B)" in proc.stdout and "h/4e^2" in proc.stdout
    no_r = tmp_path / "other.nc"
    ds.rename({"R": "X"}).to_netcdf(no_r)
    for args, text in [
        ([str(no_r)], "no variable R"),
        ([str(good), "--x", "V_g"], "not over (V_g, T)"),
        ([str(tmp_path / "missing.nc")], "no such dataset"),
    ]:
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _write(tmp_path: Path, name: str, R: np.ndarray, T: np.ndarray, B: np.ndarray) -> Path:
    path = tmp_path / name
    xr.Dataset({"R": (("T", "B"), R)}, coords={"T": T, "B": B}).to_netcdf(path)
    return path


def test_bad_values_end_in_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    ds, _ = _dataset()
    R, T, B = ds["R"].values, ds["T"].values, ds["B"].values
    inf = R.copy()
    inf[1, 3] = np.inf
    cases = [
        (_write(tmp_path, "one_T.nc", R[:1], T[:1], B), "one T"),
        (_write(tmp_path, "one_B.nc", R[:, :1], T, B[:1]), "one B point"),
        (_write(tmp_path, "nan.nc", np.full_like(R, np.nan), T, B), "no finite values"),
        (_write(tmp_path, "inf.nc", inf, T, B), "infinite values"),
        (_write(tmp_path, "negative.nc", -np.abs(R), T, B), "negative"),
    ]
    text = tmp_path / "text.nc"
    xr.Dataset(
        {"R": (("T", "B"), np.full(R.shape, "1.0 kOhm", dtype=object))}, coords={"T": T, "B": B}
    ).to_netcdf(text)
    cases.append((text, "not numeric"))
    for path, message in cases:
        proc = subprocess.run([*CLI, str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (path.name, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert message in proc.stderr, (path.name, proc.stderr)


def _phase_dataset() -> tuple[xr.Dataset, SampleModel]:
    model = SampleModel()
    V_g = np.array([13.0, 15.0, 17.0])  # V
    T = np.array([0.05, 0.08, 0.12, 0.2, 0.32])  # K
    B = np.linspace(0.004, 0.020, 41)  # T
    rng = np.random.default_rng(5)
    R = np.array([[[model.resistance(v, b, t) for b in B] for v in V_g] for t in T])
    R = R * (1 + 0.01 * rng.standard_normal(R.shape))
    ds = xr.Dataset({"R": (("T", "V_g", "B"), R)}, coords={"T": T, "V_g": V_g, "B": B})
    return ds, model


def test_a_phase_diagram_is_analysed_at_each_gate_voltage_or_at_one(tmp_path: Path) -> None:
    ds, model = _phase_dataset()
    path = tmp_path / "phase.nc"
    ds.to_netcdf(path)
    proc = subprocess.run([*CLI, str(path), "--json"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["V_g"] for r in rows] == [13.0, 15.0, 17.0]
    for r in rows:
        truth = model.truth(r["V_g"])
        assert list(r)[1 : 1 + len(KEYS)] == KEYS
        assert r["verdict"] == "single crossing"
        assert abs(r["x_c"] - truth["B_c"]) < 3 * r["x_c_err"] + 1e-5  # T
        assert r["znu"] == pytest.approx(truth["znu"], rel=0.1)
    assert (tmp_path / "phase-phase.png").read_bytes()[:4] == b"\x89PNG"
    # B_c moves with the gate voltage as the model's does
    truths = [model.truth(r["V_g"])["B_c"] for r in rows]
    assert np.argsort([r["x_c"] for r in rows]).tolist() == np.argsort(truths).tolist()
    text = subprocess.run([*CLI, str(path)], capture_output=True, text=True, timeout=180).stdout
    assert "V_g [V]" in text and "B_c [mT]" in text and len(text.splitlines()) >= 4
    one = subprocess.run(
        [*CLI, str(path), "--at", "V_g=15", "--json"], capture_output=True, text=True, timeout=120
    )
    single = json.loads(one.stdout)
    assert single["at"] == {"V_g": 15.0} and single["x_c"] == pytest.approx(rows[1]["x_c"], rel=1e-9)
    bad = subprocess.run([*CLI, str(path), "--at", "V_g"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr


def test_the_other_direction_gives_the_critical_gate_voltage_at_each_field(tmp_path: Path) -> None:
    model = SampleModel()
    V_gc = model.gate_critical_voltage()
    T = np.array([0.05, 0.08, 0.12, 0.2, 0.32])
    V_g = np.linspace(V_gc - 2.0, V_gc + 2.0, 41)
    B = np.array([0.0, 0.0005])
    rng = np.random.default_rng(2)
    R = np.array([[[model.resistance(v, b, t) for v in V_g] for b in B] for t in T])
    R = R * (1 + 0.01 * rng.standard_normal(R.shape))
    path = tmp_path / "gate.nc"
    xr.Dataset({"R": (("T", "B", "V_g"), R)}, coords={"T": T, "B": B, "V_g": V_g}).to_netcdf(path)
    proc = subprocess.run(
        [*CLI, str(path), "--x", "V_g", "--json"], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["B"] for r in rows] == [0.0, 0.0005] and all(r["x"] == "V_g" for r in rows)
    assert abs(rows[0]["x_c"] - V_gc) < 3 * rows[0]["x_c_err"] + 0.02  # V

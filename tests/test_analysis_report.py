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
    assert list(result) == KEYS
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

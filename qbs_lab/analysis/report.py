"""``qbs-lab analyze crossing``: crossing point and scaling collapse of a stored dataset, with plots.

Reads a zarr store or a netCDF file holding a variable ``R`` [Ohm] over two dimensions (the swept
quantity ``x``, e.g. ``B`` [T] or ``V_g`` [V], and the isotherms' ``T`` [K]), runs
:func:`~qbs_lab.analysis.crossing.find_crossing` and :func:`~qbs_lab.analysis.collapse.fit_collapse`,
and writes two PNGs beside the dataset: ``<name>-crossing.png`` (the isotherms with the crossing
marked) and ``<name>-collapse.png`` (R against the scaling variable).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from qbs_lab.analysis.collapse import CollapseResult, fit_collapse
from qbs_lab.analysis.crossing import H_OVER_4E2, CrossingResult, find_crossing

__all__ = ["AnalysisInputError", "analyze_crossing", "best_estimate", "format_report"]

UNITS = {"B": ("mT", 1e3), "V_g": ("V", 1.0), "T": ("mK", 1e3)}


class AnalysisInputError(ValueError):
    """A dataset that cannot be analysed (missing file, no R, wrong dimensions)."""


def _open(path: Path) -> xr.Dataset:
    if not path.exists():
        raise AnalysisInputError(f"{path}: no such dataset")
    try:
        if path.is_dir() or path.suffix == ".zarr":
            return xr.open_zarr(path)
        return xr.open_dataset(path)
    except Exception as err:  # any reader failure: say what the file is not
        raise AnalysisInputError(f"{path}: not a zarr store or netCDF file ({err})") from None


def _isotherms(R: xr.DataArray, x: str, over: str) -> dict[float, tuple[np.ndarray, np.ndarray, None]]:
    out = {}
    for T in R[over].values:
        line = R.sel({over: T})
        out[float(T)] = (np.asarray(line[x].values, float), np.asarray(line.values, float), None)
    return out


def analyze_crossing(
    path: str | Path, x: str = "B", over: str = "T", n_boot: int = 200, plots: bool = True
) -> tuple[dict[str, Any], list[Path]]:
    """The JSON-ready result (keys as :meth:`CrossingResult.to_dict`, z*nu and quality filled in from
    the collapse) and the plots written."""
    path = Path(path)
    ds = _open(path)
    if "R" not in ds:
        raise AnalysisInputError(
            f"{path}: no variable R (has: {', '.join(map(str, ds.data_vars)) or 'none'})"
        )
    R = ds["R"].load()
    if set(R.dims) != {x, over}:
        raise AnalysisInputError(f"{path}: R is over {R.dims}, not over ({x}, {over}): use --x and --over")
    result, crossing, collapse = best_estimate(R, x, over, n_boot)
    written = _plots(path, R, x, over, crossing, collapse) if plots else []
    return result, written


def best_estimate(
    R: xr.DataArray, x: str = "B", over: str = "T", n_boot: int = 200
) -> tuple[dict[str, Any], CrossingResult, CollapseResult | None]:
    """The JSON-ready result: the crossing analysis, then the collapse's z*nu and quality and, when the
    collapse succeeds, its refined critical point as x_c (its errors include the isotherm and window
    systematics the pairwise crossings' bootstrap leaves out; with a fitted drift it is the T -> 0
    value). ``crossings`` stay the pairwise ones."""
    crossing = find_crossing(R, x=x, over=over, n_boot=n_boot)
    result = crossing.to_dict()
    collapse = None
    if crossing.verdict != "no crossing in range":
        collapse = fit_collapse(_isotherms(R, x, over), n_boot=min(n_boot, 50))
        result.update(
            znu=_finite(collapse.znu), znu_err=_finite(collapse.znu_err), quality=_finite(collapse.quality)
        )
        x_c, x_c_err = _finite(collapse.x_c), _finite(collapse.x_c_err)
        if x_c is not None and x_c_err is not None:
            result.update(x_c=x_c, x_c_err=x_c_err)
    return result, crossing, collapse


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _plots(
    path: Path, R: xr.DataArray, x: str, over: str, crossing: CrossingResult, collapse: CollapseResult | None
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no network
    import matplotlib.pyplot as plt

    xu, xs = UNITS.get(x, (R[x].attrs.get("units", ""), 1.0))
    stem = path.with_suffix("") if path.suffix in (".zarr", ".nc") else path
    written = []
    temps = [float(T) for T in R[over].values]
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(temps)))

    fig, ax = plt.subplots(figsize=(7, 5))
    for T, c in zip(temps, colors, strict=True):
        line = R.sel({over: T})
        ax.plot(line[x] * xs, line / 1e3, "o-", ms=3, lw=1, color=c, label=f"{T * 1e3:.0f} mK")
    for cr in crossing.crossings:
        ax.plot(cr.x * xs, cr.R / 1e3, "k+", ms=8, alpha=0.6)
    if math.isfinite(crossing.x_c):
        ax.axvspan(
            (crossing.x_c - 2 * crossing.x_c_err) * xs,
            (crossing.x_c + 2 * crossing.x_c_err) * xs,
            color="red",
            alpha=0.15,
            label="x_c ± 2σ",
        )
        ax.plot(
            crossing.x_c * xs,
            crossing.R_c / 1e3,
            "r*",
            ms=14,
            label=f"crossing {crossing.x_c * xs:.4g} {xu}, {crossing.R_c / 1e3:.4g} kΩ",
        )
    ax.axhline(H_OVER_4E2 / 1e3, color="grey", ls=":", lw=1, label="h/4e² = 6.45 kΩ")
    ax.set_xlabel(f"{x} [{xu}]")
    ax.set_ylabel("R [kΩ]")
    ax.set_title(f"{path.name}: {crossing.verdict}")
    ax.legend(fontsize=8)
    written.append(_save(fig, Path(f"{stem}-crossing.png")))

    if collapse is not None and math.isfinite(collapse.znu):
        excluded = {T for T, _ in collapse.excluded}
        fig, ax = plt.subplots(figsize=(7, 5))
        for T, c in zip(temps, colors, strict=True):
            line = R.sel({over: T})
            u = collapse.scaling_variable(np.asarray(line[x]), float(T)) * xs  # x_c(T) with a fitted drift
            style = (
                {"color": "lightgrey", "label": f"{T * 1e3:.0f} mK (excluded)"}
                if T in excluded
                else {"color": c, "label": f"{T * 1e3:.0f} mK"}
            )
            ax.plot(u, np.asarray(line) / 1e3, "o", ms=3, **style)
        ax.set_xlabel(f"({x} − {x}_c) · T^(−1/zν)  [{xu} K^(−1/zν)]")
        ax.set_ylabel("R [kΩ]")
        ax.set_title(
            f"collapse: zν = {collapse.znu:.3g} ± {collapse.znu_err:.2g}, S = {collapse.quality:.2g}"
        )
        ax.legend(fontsize=8)
        written.append(_save(fig, Path(f"{stem}-collapse.png")))
    return written


def _save(fig: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def format_report(result: dict[str, Any], x: str, plots: list[Path]) -> str:
    """A short readable report of :func:`analyze_crossing`'s result."""
    xu, xs = UNITS.get(x, ("", 1.0))
    lines = [f"verdict: {result['verdict']} ({len(result['crossings'])} pairwise crossings)"]
    if result["x_c"] is not None:
        lines.append(f"x_c = {result['x_c'] * xs:.5g} ± {result['x_c_err'] * xs:.2g} {xu} ({x})")
        ratio = result["R_c"] / H_OVER_4E2
        lines.append(f"R_c = {result['R_c']:.5g} ± {result['R_c_err']:.2g} Ohm = {ratio:.3f} h/4e^2")
    if result.get("znu") is not None:
        err = result.get("znu_err")
        lines.append(f"z·ν = {result['znu']:.3g}" + (f" ± {err:.2g}" if err is not None else ""))
        lines.append(
            f"collapse quality S = {result['quality']:.3g} (about 1 for a collapse within the noise)"
        )
    lines += [f"plot: {p}" for p in plots]
    return "\n".join(lines)

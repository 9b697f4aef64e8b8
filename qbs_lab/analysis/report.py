"""``qbs-lab analyze crossing``: crossing point and scaling collapse of a stored dataset, with plots.

Reads a zarr store or a netCDF file holding a variable ``R`` [Ohm] over two dimensions (the swept
quantity ``x``, e.g. ``B`` [T] or ``V_g`` [V], and the isotherms' ``T`` [K]), analyses it with
:func:`~qbs_lab.analysis.estimate.analyze_isotherms` (the same code path as the online update of a run),
and writes two PNGs beside the dataset: ``<name>-crossing.png`` (the isotherms with the crossing and
its error bars) and ``<name>-collapse.png`` (R against the scaling variable, excluded isotherms faded).

A phase-diagram dataset (R over T, V_g and B) is analysed at each value of the third dimension (or at
the one chosen with ``at={"V_g": 15}``): B_c, R_c and z*nu against V_g (or V_gc against B with
``x="V_g"``), as a table, a JSON list and ``<name>-phase.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qbs_lab.analysis.crossing import CrossingResult
from qbs_lab.analysis.estimate import UNITS, Analysis, analyze_isotherms

if TYPE_CHECKING:  # xarray takes a second to import: only where a dataset is read
    import xarray as xr

__all__ = [
    "AnalysisInputError",
    "analyze_crossing",
    "analyze_dataset",
    "format_report",
    "format_search",
    "parse_at",
    "search_estimate",
]


class AnalysisInputError(ValueError):
    """A dataset that cannot be analysed (missing file, no R, wrong dimensions, unusable values)."""


def _open(path: Path) -> xr.Dataset:
    import xarray as xr

    if not path.exists():
        raise AnalysisInputError(f"{path}: no such dataset")
    try:
        if path.is_dir() or path.suffix == ".zarr":
            return xr.open_zarr(path)
        return xr.open_dataset(path)
    except Exception as err:  # any reader failure: say what the file is not
        raise AnalysisInputError(f"{path}: not a zarr store or netCDF file ({err})") from None


def parse_at(text: str | None) -> dict[str, float]:
    """``"V_g=15"`` -> {"V_g": 15.0}; None -> {}."""
    if not text:
        return {}
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return {name.strip(): float(value)}
    except ValueError:
        raise AnalysisInputError(f"--at {text!r}: expected NAME=VALUE, e.g. --at V_g=15") from None


def check_values(R: xr.DataArray, x: str, over: str, where: str) -> None:
    """One clear :class:`AnalysisInputError` for data no crossing can come from."""
    if not np.issubdtype(R.dtype, np.number) or np.issubdtype(R.dtype, np.complexfloating):
        raise AnalysisInputError(f"{where}: R is not numeric (dtype {R.dtype}); expected resistances in Ohm")
    v = np.asarray(R.values, dtype=float)
    if R.sizes[over] < 2:
        T = float(R[over].values.ravel()[0]) if R.sizes[over] else math.nan
        raise AnalysisInputError(
            f"{where}: R has one {over} ({over} = {T:g}): a crossing needs isotherms at two or more"
        )
    if R.sizes[x] < 2:
        raise AnalysisInputError(f"{where}: R has one {x} point: a crossing needs isotherms swept in {x}")
    if not np.isfinite(v).any() and not np.isinf(v).any():
        raise AnalysisInputError(f"{where}: R has no finite values (all NaN)")
    n_inf = int(np.isinf(v).sum())
    if n_inf:
        raise AnalysisInputError(
            f"{where}: R has {n_inf} infinite values: a failed measurement stored as inf?"
        )
    finite = v[np.isfinite(v)]
    top = float(np.max(np.abs(finite)))
    if float(finite.min()) < -0.05 * top:
        raise AnalysisInputError(
            f"{where}: R is negative beyond noise about zero (min {finite.min():.4g} Ohm, largest |R| "
            f"{top:.4g} Ohm): swapped voltage leads or a lock-in phase off by 180 degrees?"
        )


def analyze_dataset(
    ds: xr.Dataset,
    x: str = "B",
    over: str = "T",
    n_boot: int = 200,
    at: dict[str, float] | None = None,
    where: str = "dataset",
) -> tuple[list[tuple[dict[str, float], Analysis]], xr.DataArray]:
    """[(the slice's coordinates, Analysis)] of a 2-D dataset (one entry) or a 3-D phase diagram (one per
    value of the third dimension), and R (the slice with ``at``)."""
    if "R" not in ds:
        raise AnalysisInputError(
            f"{where}: no variable R (has: {', '.join(map(str, ds.data_vars)) or 'none'})"
        )
    R = ds["R"]
    if x not in R.dims or over not in R.dims:
        raise AnalysisInputError(f"{where}: R is over {R.dims}, not over ({x}, {over}): use --x and --over")
    others = [d for d in R.dims if d not in (x, over)]
    if len(others) > 1:
        raise AnalysisInputError(f"{where}: R is over {R.dims}: more than three dimensions")
    for name, value in (at or {}).items():
        if name not in R.dims or name in (x, over):
            raise AnalysisInputError(f"{where}: --at {name}: R has no other dimension {name} (dims {R.dims})")
        R = R.sel({name: value}, method="nearest")
        others = []
    R = R.load()
    if not others:
        check_values(R, x, over, where)
        fixed = {k: float(R[k].values) for k in (at or {})}
        return [(fixed, analyze_isotherms(R.transpose(over, x), x, over, n_boot))], R
    other = others[0]
    out = []
    for value in R[other].values:
        sl = R.sel({other: value})
        check_values(sl, x, over, f"{where} at {other} = {float(value):g}")
        out.append(({other: float(value)}, analyze_isotherms(sl.transpose(over, x), x, over, n_boot)))
    return out, R


def analyze_crossing(
    path: str | Path,
    x: str = "B",
    over: str = "T",
    n_boot: int = 200,
    plots: bool = True,
    at: dict[str, float] | None = None,
) -> tuple[dict[str, Any] | list[dict[str, Any]], list[Path], list[tuple[dict[str, float], Analysis]]]:
    """The JSON-ready result (an object for one set of isotherms, a list for a phase diagram), the
    plots written, and the analyses."""
    path = Path(path)
    results, R = analyze_dataset(_open(path), x, over, n_boot, at, str(path))
    written: list[Path] = []
    stem = path.with_suffix("") if path.suffix in (".zarr", ".nc") else path
    if len(results) == 1 and not (set(R.dims) - {x, over}):
        fixed, analysis = results[0]
        if plots:
            written = _plots(stem, path.name, R, analysis)
        return analysis.to_dict() | ({"at": fixed} if fixed else {}), written, results
    if plots:
        written = [_phase_plot(stem, path.name, results, x)]
    return [fixed | a.to_dict() for fixed, a in results], written, results


def search_estimate(path: str | Path) -> dict[str, Any] | None:
    """An adaptive search's own estimate (``find_crossing``: every reading at its own temperature), if
    the run at ``path`` was one; None otherwise."""
    import json

    try:
        attrs = _open(Path(path)).attrs
        return json.loads(attrs["search"]).get("estimate")
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


# -- text -----------------------------------------------------------------------------------------------


def format_search(est: dict[str, Any]) -> str:
    """The search's estimate in two lines, beside the grid's analysis."""
    T = est.get("T_range_K") or [math.nan, math.nan]
    return (
        f"adaptive search's own estimate (each reading at its own temperature, {T[0] * 1e3:.3g}-"
        f"{T[1] * 1e3:.3g} mK): B_c = {est['B_c'] * 1e3:.5g} ± {est['B_c_err'] * 1e3:.2g} mT,"
        f" R_c = {est['R_c']:.5g} ± {est['R_c_err']:.2g} Ohm, z·ν = {est['z_nu']:.3g} ± {est['z_nu_err']:.2g}"
        "\n  (the grid above stores each band of temperature as one isotherm: its spread blurs the collapse)"
    )


def format_report(results: list[tuple[dict[str, float], Analysis]], x: str, plots: list[Path]) -> str:
    """A short readable report: the analysis of one set of isotherms, or a phase-diagram table."""
    if len(results) == 1:
        fixed, analysis = results[0]
        head = [f"at {k} = {v:g} {UNITS.get(k, ('', 1))[0]}".rstrip() for k, v in fixed.items()]
        return "\n".join(head + analysis.lines() + [f"plot: {p}" for p in plots])
    other = next(iter(results[0][0]))
    ou, os_ = UNITS.get(other, ("", 1.0))
    xu, xs = UNITS.get(x, ("", 1.0))
    lines = [
        f"{f'{other} [{ou}]':>10}  {'verdict':<20} {f'{x}_c [{xu}]':>18}  {'R_c [Ohm]':>16}  "
        f"{'z·ν':>12}  excluded",
    ]
    for fixed, a in results:
        c, k = a.crossing, a.collapse
        xc = f"{c.x_c * xs:.5g} ± {c.x_c_err * xs:.2g}" if math.isfinite(c.x_c) else "-"
        rc = f"{c.R_c:.5g} ± {c.R_c_err:.2g}" if math.isfinite(c.R_c) else "-"
        zn = f"{k.znu:.3g} ± {k.znu_err:.2g}" if a.collapse_ok and k is not None else "-"
        lines.append(
            f"{fixed[other] * os_:>10.4g}  {c.verdict:<20} {xc:>18}  {rc:>16}  {zn:>12}  {len(a.excluded)}"
        )
    return "\n".join(lines + [f"plot: {p}" for p in plots])


# -- plots ----------------------------------------------------------------------------------------------


class _Figures:
    """The little of pyplot the plots use, on matplotlib's Agg canvas: files only (no display, no
    network), and without importing pyplot and its backends (a second of start-up)."""

    @staticmethod
    def subplots(figsize: tuple[float, float]) -> tuple[Any, Any]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot()

    @property
    def cm(self) -> Any:
        from matplotlib import colormaps

        class _Cm:
            viridis = colormaps["viridis"]

        return _Cm


def _pyplot() -> Any:
    return _Figures()


def _set_log(ax: Any, values_kohm: np.ndarray) -> None:
    """Log R axis with plain numbers (2, 5, 10 kΩ rather than 2 x 10^0), at most three decades deep.

    Below R_max / 1000 a superconducting isotherm is the lock-in's noise floor, not information; it
    would push the crossing region into a corner. Minor ticks are labelled only on a short axis, where
    they do not overlap.
    """
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.set_yscale("log")
    v = values_kohm[np.isfinite(values_kohm) & (values_kohm > 0)]
    top = float(v.max())
    bottom = max(float(v.min()), top / 1e3)
    ax.set_ylim(bottom / 1.3, top * 1.3)
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    short = top / bottom < 30
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g") if short else NullFormatter())


def _log_axis(values: np.ndarray) -> bool:
    """R on a log axis when it spans more than a decade (positive values)."""
    v = values[np.isfinite(values) & (values > 0)]
    return v.size > 1 and float(v.max()) > 10 * float(v.min())


def _plots(stem: Path, name: str, R: xr.DataArray, analysis: Analysis) -> list[Path]:
    plt = _pyplot()
    x, over = analysis.x, analysis.over
    xu, xs = UNITS.get(x, (R[x].attrs.get("units", ""), 1.0))
    temps = [float(T) for T in R[over].values]
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(temps)))
    excluded = {T for T, _ in analysis.excluded}
    c, k = analysis.crossing, analysis.collapse
    values = np.asarray(R.values, dtype=float)
    log = _log_axis(values)
    marker = "o-" if R.sizes[x] <= 200 else "-"
    written = []

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for T, col in zip(temps, colors, strict=True):
        line = R.sel({over: T})
        style = {"color": "lightgrey", "alpha": 0.6} if T in excluded else {"color": col}
        label = f"{T * 1e3:.0f} mK" + (" (excluded)" if T in excluded else "")
        ax.plot(np.asarray(line[x]) * xs, np.asarray(line) / 1e3, marker, ms=2.5, lw=1, label=label, **style)
    for cr in c.crossings:
        ax.plot(cr.x * xs, cr.R / 1e3, "k+", ms=7, alpha=0.5)
    if math.isfinite(c.x_c):
        xe = c.x_c_err * xs if math.isfinite(c.x_c_err) else 0.0
        ye = c.R_c_err / 1e3 if math.isfinite(c.R_c_err) else 0.0
        ax.errorbar(
            c.x_c * xs,
            c.R_c / 1e3,
            xerr=2 * xe,
            yerr=2 * ye,
            fmt="r*",
            ms=13,
            capsize=4,
            zorder=5,
            label=f"crossing {c.x_c * xs:.5g} ± {xe:.2g} {xu}, {c.R_c / 1e3:.4g} ± {ye:.2g} kΩ (bars 2σ)",
        )
    from qbs_lab.analysis.crossing import H_OVER_4E2

    ax.axhline(H_OVER_4E2 / 1e3, color="grey", ls=":", lw=1, label="h/4e² = 6.45 kΩ")
    if log:
        _set_log(ax, values / 1e3)
    ax.set_xlabel(f"{x} [{xu}]")
    ax.set_ylabel("R [kΩ]")
    ax.set_title(_title(name, c), fontsize=10)
    ax.legend(fontsize=7, ncol=2 if len(temps) > 8 else 1)
    written.append(_save(fig, Path(f"{stem}-crossing.png")))

    if k is not None and math.isfinite(k.znu) and math.isfinite(k.x_c):
        fig, ax = plt.subplots(figsize=(7.5, 5.2))
        us = []
        for T, col in zip(temps, colors, strict=True):
            line = R.sel({over: T})
            u = k.scaling_variable(np.asarray(line[x]), T) * xs
            faded = T in excluded
            ax.plot(
                u, np.asarray(line) / 1e3, "o", ms=2.5,
                color="lightgrey" if faded else col, alpha=0.5 if faded else 1.0,
                label=f"{T * 1e3:.0f} mK" + (" (excluded)" if faded else ""), zorder=1 if faded else 2,
            )  # fmt: skip
            if not faded:
                us.append(u)
        if k._coef.size and us:
            grid = np.linspace(
                float(np.nanmin(np.concatenate(us))), float(np.nanmax(np.concatenate(us))), 400
            )
            ax.plot(grid, k.master(grid / xs) / 1e3, "k-", lw=1, label="master curve")
        if log:
            _set_log(ax, values / 1e3)
        ax.set_xlabel(f"({x} − {x}_c) · T^(−1/zν)  [{xu} · K^(−1/zν)]")
        ax.set_ylabel("R [kΩ]")
        if k.ok:
            ax.set_title(
                f"collapse: zν = {k.znu:.3g} ± {k.znu_err:.2g}, {x}_c = {k.x_c * xs:.5g} {xu}, "
                f"quality {k.quality:.2g}", fontsize=10,
            )  # fmt: skip
        else:
            ax.set_title(f"collapse failed: {k.reason}", fontsize=9)
        ax.legend(fontsize=7, ncol=2 if len(temps) > 8 else 1)
        written.append(_save(fig, Path(f"{stem}-collapse.png")))
    return written


def _title(name: str, c: CrossingResult) -> str:
    if c.verdict == "no crossing in range":
        return f"{name}: {c.verdict}: {c.order}"
    return f"{name}: {c.verdict}"


def _phase_plot(stem: Path, name: str, results: list[tuple[dict[str, float], Analysis]], x: str) -> Path:
    plt = _pyplot()
    other = next(iter(results[0][0]))
    ou, os_ = UNITS.get(other, ("", 1.0))
    xu, xs = UNITS.get(x, ("", 1.0))
    v = np.array([f[other] for f, _ in results]) * os_
    xc = np.array([a.crossing.x_c for _, a in results]) * xs
    xe = np.array([a.crossing.x_c_err for _, a in results]) * xs
    fig, ax = plt.subplots(figsize=(7, 5))
    ok = np.isfinite(xc)
    ax.errorbar(v[ok], xc[ok], yerr=np.where(np.isfinite(xe[ok]), 2 * xe[ok], 0), fmt="o-", capsize=3,
                label=f"{x}_c (bars 2σ)")  # fmt: skip
    if (~ok).any():
        ax.plot(v[~ok], np.full((~ok).sum(), np.nanmin(xc) if ok.any() else 0.0), "x", color="grey",
                label="no crossing in range")  # fmt: skip
    ax.set_xlabel(f"{other} [{ou}]")
    ax.set_ylabel(f"{x}_c [{xu}]")
    ax.set_title(f"{name}: critical {x} against {other}")
    ax.legend(fontsize=8)
    return _save(fig, Path(f"{stem}-phase.png"))


def _save(fig: Any, out: Path) -> Path:
    # a tight bounding box at save time: one layout pass instead of tight_layout's extra full draw
    fig.savefig(out, dpi=110, bbox_inches="tight", pad_inches=0.1)
    return out

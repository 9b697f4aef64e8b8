"""Fridge time to pin down the critical point: the stepped grid, the continuous sweep and find_crossing.

On the simulated lab (station.yaml, V_g = 15 V), for each scenario (clean; drifting, where
B_c(T) = B_c (1 + 0.3 T / 1 K)) and seed, three ways of measuring the field-tuned critical point run
side by side, each with its defaults:

- stepped grid: ``field_isotherms`` (5 isotherms, 60-240 mK, x 25 fields, 6 to 18 mT, settle and read
  at each field);
- continuous sweep: the same with ``sweep="continuous"`` (the magnet ramps while the lock-in is read,
  its filter lag corrected);
- find_crossing: the adaptive, cost-aware search (its own estimate, the ``search`` attribute of its run).

For the two grids B_c and z·ν come from :func:`qbs_lab.analysis.estimate.analyze_isotherms`, the code path
of ``qbs-lab analyze crossing``. The truth (the run's ``truth`` attribute, key ``B_c``) is the critical
field at T -> 0 in both scenarios, so each grid is judged on the analysis's own T -> 0 value: the
collapse's x_c where the collapse fitted a drifting x_c(T) = x_c + drift·T (the drifting scenario), else
the joint crossing's x_c ± error (whose error includes its disagreement with the collapse). The rule reads
the analysis's result, never the scenario; z·ν is the collapse's. The collapse's and the crossing's x_c
alone are shown below the table. find_crossing is judged on its own estimate (B_c, z_nu and their
errors); the same analysis of its dataset (isotherms on their own field points) is shown beside it.

Printed per method and scenario: the fridge time (the run's phases summed, parking included; median and
range over the seeds), the share of seeds with |B_c - truth| <= 1 % and |z·ν - truth| <= 10 %, the median
errors, the 2σ coverage of the reported errors (share of seeds whose truth lies within 2 x the stated
1σ), and the stepped grid's median fridge time over each method's; then, per scenario, whether
find_crossing meets the issue's goal (targets in >= 90 % of seeds in >= 4x less fridge time than the
stepped grid, with >= 90 % 2σ coverage of both errors). A run that fails counts as a miss.

Run from the repository root (a few seconds of wall time per run, two runs at a time: the 40 runs of the
two grids take about 1.5 minutes on two cores, find_crossing's come on top):

    python benchmarks/fridge_time.py [--seeds 10] [--scenarios clean,drifting] [--workers 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qbs_lab.progress import format_duration

ROOT = Path(__file__).resolve().parent.parent
STATION = ROOT / "station.yaml"
#: method -> (procedure, parameters, the estimate it is judged on)
METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "stepped grid": ("field_isotherms", {}, "analysis"),
    "continuous sweep": ("field_isotherms", {"sweep": "continuous"}, "analysis"),
    "find_crossing": ("find_crossing", {}, "search"),
}
BASELINE = "stepped grid"
B_TARGET, ZNU_TARGET = 0.01, 0.10  # relative
GOAL_RATIO, GOAL_SHARE = 4.0, 0.90
PHASES = ("stabilize", "settle", "ramp", "measure", "park")  # the runner's phases of fridge time


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def analysis_estimates(ds: Any) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """The estimates of analyze_isotherms, each {B_c, B_c_err, znu, znu_err} [T, T, 1, 1] (z·ν is the
    collapse's in all three; NaN where the collapse failed), and what the analysis said:

    - "analysis": the T -> 0 critical field as the analysis itself reports it: the collapse's x_c when the
      collapse fitted a drifting x_c(T) = x_c + drift·T, otherwise the joint crossing's x_c ± error;
    - "collapse": the collapse's x_c ± error, always;
    - "crossing": the joint crossing's x_c ± error, always (with a drift it is not the T -> 0 value).
    """
    from qbs_lab.analysis.estimate import analyze_isotherms

    a = analyze_isotherms(ds)
    k, c = a.collapse, a.crossing
    ok = a.collapse_ok and k is not None
    znu, znu_err = (k.znu, k.znu_err) if ok else (math.nan, math.nan)
    collapse = {
        "B_c": k.x_c if ok else math.nan,
        "B_c_err": k.x_c_err if ok else math.nan,
        "znu": znu,
        "znu_err": znu_err,
    }
    crossing = {"B_c": c.x_c, "B_c_err": c.x_c_err, "znu": znu, "znu_err": znu_err}
    drifts = ok and k.drift_err > 0
    said = {
        "verdict": c.verdict,
        "collapse": None if k is None else k.status + (f" ({k.reason})" if k.reason else ""),
        "drift": k.drift if drifts else 0.0,  # [T/K]
        "excluded": [T for T, _ in a.excluded],
    }
    return {"analysis": collapse if drifts else crossing, "collapse": collapse, "crossing": crossing}, said


def one_run(task: tuple[str, str, int]) -> dict[str, Any]:
    """Run one method on one scenario and seed; the row (never raises: a failure is a row with ``error``)."""
    import qbs_lab

    method, scenario, seed = task
    procedure, params, judged_on = METHODS[method]
    row: dict[str, Any] = {"method": method, "scenario": scenario, "seed": seed, "judged_on": judged_on}
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = qbs_lab.run(
                procedure,
                sim=True,
                seed=seed,
                scenario=scenario,
                station=STATION,
                data=tmp,
                progress=False,
                **params,
            )
            ds = run.dataset
            row["status"] = run.status
            row["fridge_time"] = run.fridge_time  # [s]
            row["phases"] = _json(ds.attrs.get("phases", "{}"))
            row["points"] = int(np.isfinite(ds["R"].values).sum())
            truth = _json(ds.attrs["truth"])
            if "B_c" not in truth:  # a plan without a fixed V_g records the gate-tuned truth only
                from qbs_lab.sim import SimLab

                V_g = float(run.parameters.get("V_g", 15.0))
                with SimLab.from_station(STATION, seed=seed, scenario=scenario) as lab:
                    truth = lab.truth_at(V_g)
            row["truth"] = {"B_c": truth["B_c"], "R_c": truth["R_c"], "znu": truth["znu"]}
            if run.status != "completed":
                raise RuntimeError(f"run {run.status}: {run.message}")
            estimates = {}
            if "search" in ds.attrs:
                search = _json(ds.attrs["search"])
                e = search.get("estimate", {})
                estimates["search"] = {
                    "B_c": _num(e.get("B_c")),
                    "B_c_err": _num(e.get("B_c_err")),
                    "znu": _num(e.get("z_nu", e.get("znu"))),
                    "znu_err": _num(e.get("z_nu_err", e.get("znu_err"))),
                    "R_c": _num(e.get("R_c")),
                    "R_c_err": _num(e.get("R_c_err")),
                }
                row["stopped"] = search.get("stopped")
                row["decisions"] = len(search.get("decisions", []))
            try:
                found, row["analysis"] = analysis_estimates(ds)
                estimates.update(found)
            except Exception as err:  # the search's own estimate stands without it
                row["analysis_error"] = f"{type(err).__name__}: {err}"
            row["estimates"] = estimates
    except Exception as err:  # one line in the table instead of a traceback
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    row["wall"] = time.perf_counter() - t0  # [s]
    return row


def judge(row: dict[str, Any], name: str) -> dict[str, Any] | None:
    """Relative errors, targets and 2σ coverage of one estimate of a row (None: no such estimate)."""
    e = row.get("estimates", {}).get(name)
    if e is None or "truth" not in row:
        return None
    t = row["truth"]
    dB = abs(e["B_c"] - t["B_c"])
    dz = abs(e["znu"] - t["znu"])
    with np.errstate(invalid="ignore"):
        return {
            "dB": dB / t["B_c"],
            "dz": dz / t["znu"],
            "sB": e["B_c_err"] / t["B_c"],
            "sz": e["znu_err"] / t["znu"],
            "ok": bool(dB <= B_TARGET * t["B_c"] and dz <= ZNU_TARGET * t["znu"]),
            "cov_B": bool(dB <= 2 * e["B_c_err"]),
            "cov_z": bool(dz <= 2 * e["znu_err"]),
        }


def summarize(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Figures of one method and scenario judged on estimate ``name``; failed runs count as misses."""
    n = len(rows)
    done = [r for r in rows if "error" not in r]
    times = [r["fridge_time"] for r in done]
    judged = [j for j in (judge(r, name) for r in done) if j is not None]

    def share(key: str) -> float:
        return sum(j[key] for j in judged) / n if n else math.nan

    def median(key: str) -> float:
        v = [j[key] for j in judged if math.isfinite(j[key])]
        return float(np.median(v)) if v else math.nan

    return {
        "n": n,
        "n_ok": len(done),
        "n_judged": len(judged),
        "t_med": float(np.median(times)) if times else math.nan,
        "t_min": min(times) if times else math.nan,
        "t_max": max(times) if times else math.nan,
        "targets": share("ok"),
        "dB": median("dB"),
        "dz": median("dz"),
        "sB": median("sB"),
        "sz": median("sz"),
        "cov_B": share("cov_B"),
        "cov_z": share("cov_z"),
    }


def plain(obj: Any) -> Any:
    """JSON-ready: NaN and infinities as null (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def hms(seconds: float) -> str:
    return format_duration(seconds) if math.isfinite(seconds) else "-"


def times(ratio: float) -> str:
    return f"{ratio:.2f}x" if math.isfinite(ratio) else "-"


def pct(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f} %" if math.isfinite(x) else "-"


def find_crossing_available() -> str | None:
    """None if the procedure loads, else why not (one line)."""
    from qbs_lab.procedure import load_procedure

    try:
        load_procedure("find_crossing")
    except Exception as err:
        return str(err).splitlines()[0].split(";")[0]
    return None


class RunProgress:
    """Runs done and the wall time left, on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()

    def step(self, row: dict[str, Any]) -> None:
        self.done += 1
        wall = time.monotonic() - self.t0
        left = wall / self.done * (self.total - self.done)
        what = f"{row['method']}, {row['scenario']}, seed {row['seed']}"
        if "error" in row:
            what += f": FAILED ({row['error']})"
        text = (
            f"fridge_time: {self.done}/{self.total} runs, {format_duration(wall)} elapsed,"
            f" about {format_duration(left)} left (last: {what})"
        )
        sys.stderr.write(("\r\033[K" if self.tty else "") + text + ("" if self.tty else "\n"))
        if self.tty and ("error" in row or self.done == self.total):
            sys.stderr.write("\n")
        sys.stderr.flush()


def print_table(
    rows: list[dict[str, Any]], scenarios: list[str], methods: list[str], missing: str | None
) -> None:
    head = (
        f"{'scenario':9s} {'method':17s} {'runs ok':>7s} {'fridge time [h:mm:ss], median (min–max)':>41s}"
        f" {'targets met':>11s} {'|ΔB_c|':>8s} {'|Δzν|':>8s} {'σ B_c':>8s} {'σ zν':>8s} {'B_c 2σ cov':>10s}"
        f" {'zν 2σ cov':>9s} {'less fridge time':>16s}"
    )
    print(head)
    print("-" * len(head))
    summaries: dict[tuple[str, str], dict[str, Any]] = {}
    for sc in scenarios:
        base = summarize([r for r in rows if r["scenario"] == sc and r["method"] == BASELINE], "analysis")
        for m in methods:
            if m == "find_crossing" and missing is not None:
                print(f"{sc:9s} {m:17s} not available: {missing}")
                continue
            s = summarize([r for r in rows if r["scenario"] == sc and r["method"] == m], METHODS[m][2])
            if not s["n"]:
                continue
            summaries[sc, m] = s
            ratio = base["t_med"] / s["t_med"] if s["t_med"] > 0 else math.nan
            span = f"{hms(s['t_med'])} ({hms(s['t_min'])}–{hms(s['t_max'])})"
            print(
                f"{sc:9s} {m:17s} {s['n_ok']:3d}/{s['n']:<3d} {span:>41s} {pct(s['targets']):>11s}"
                f" {pct(s['dB'], 2):>8s} {pct(s['dz'], 1):>8s} {pct(s['sB'], 2):>8s} {pct(s['sz'], 1):>8s}"
                f" {pct(s['cov_B']):>10s} {pct(s['cov_z']):>9s} {times(ratio):>16s}"
            )
    print(
        "\ntargets: |B_c - truth| <= 1 % and |z·ν - truth| <= 10 % (share of seeds); |ΔB_c|, |Δzν|: medians,"
        "\nrelative to the truth; σ B_c, σ zν: the median reported 1σ errors, relative; 2σ cov: share of"
        "\nseeds whose truth lies within 2 x the reported 1σ error; less fridge time: the stepped grid's"
        "\nmedian fridge time over the method's. Truth B_c is the T -> 0 value. Judged on: stepped and"
        "\ncontinuous, analyze_isotherms' T -> 0 x_c (the collapse's where it fitted a drift, else the joint"
        "\ncrossing's) and the collapse's z·ν; find_crossing, its own estimate (attrs['search'])."
    )

    # every other estimate of the same runs, for comparison
    labels = {
        "analysis": "analyze_isotherms, T -> 0 x_c",
        "collapse": "the collapse's x_c",
        "crossing": "the joint crossing's x_c",
    }
    head = f"{'the same runs, other estimates':56s} {'targets met':>11s} {'|ΔB_c|':>8s} {'|Δzν|':>8s}"
    print(f"\n{head} {'B_c 2σ cov':>10s} {'zν 2σ cov':>9s}")
    for sc in scenarios:
        for m in methods:
            if m == "find_crossing" and missing is not None:
                continue
            sel = [r for r in rows if r["scenario"] == sc and r["method"] == m]
            for name, label in labels.items():
                s = summarize(sel, name)
                if name == METHODS[m][2] or not s["n_judged"]:
                    continue
                label = f"{sc}, {m}: {label}"
                print(
                    f"{label:56s} {pct(s['targets']):>11s} {pct(s['dB'], 2):>8s} {pct(s['dz'], 1):>8s}"
                    f" {pct(s['cov_B']):>10s} {pct(s['cov_z']):>9s}"
                )
    head = f"\n{'where the fridge time goes (medians)':36s} " + " ".join(f"{p:>10s}" for p in PHASES)
    print(head + f" {'points measured':>16s}")
    for sc in scenarios:
        for m in methods:
            sel = [r for r in rows if r["scenario"] == sc and r["method"] == m and "error" not in r]
            if sel:
                cells = [
                    hms(float(np.median([r.get("phases", {}).get(p, 0.0) for r in sel]))) for p in PHASES
                ]
                points = int(np.median([r["points"] for r in sel]))
                print(f"{sc + ', ' + m:36s} " + " ".join(f"{c:>10s}" for c in cells) + f" {points:16d}")
    failed = [r for r in rows if "analysis" in r and not str(r["analysis"]["collapse"]).startswith("ok")]
    for r in failed:
        print(
            f"collapse not ok: {r['method']}, {r['scenario']}, seed {r['seed']}: {r['analysis']['collapse']}"
        )

    print()
    for sc in scenarios:
        if missing is not None:
            print(f"{sc}: goal not assessed: find_crossing not available ({missing})")
            continue
        if (sc, "find_crossing") not in summaries or (sc, BASELINE) not in summaries:
            print(f"{sc}: goal not assessed: run with the stepped grid and find_crossing")
            continue
        s, base = summaries[sc, "find_crossing"], summaries[sc, BASELINE]
        ratio = base["t_med"] / s["t_med"] if s["t_med"] > 0 else math.nan
        met = (
            ratio >= GOAL_RATIO
            and s["targets"] >= GOAL_SHARE
            and s["cov_B"] >= GOAL_SHARE
            and s["cov_z"] >= GOAL_SHARE
        )
        print(
            f"{sc}: goal {'MET' if met else 'NOT met'}: find_crossing {times(ratio)} less fridge time than"
            f" the stepped grid ({hms(s['t_med'])} vs {hms(base['t_med'])}; goal >= {GOAL_RATIO:g}x),"
            f" targets met in {pct(s['targets'])} of seeds, 2σ coverage B_c {pct(s['cov_B'])},"
            f" z·ν {pct(s['cov_z'])} (goal >= {pct(GOAL_SHARE)} each)"
        )
    stops = [r for r in rows if r["method"] == "find_crossing" and r.get("stopped")]
    if stops:
        reasons: dict[str, int] = {}
        for r in stops:  # grouped without their figures ("... (255 mK)")
            reason = re.sub(r"\s*\([^)]*\d[^)]*\)", "", r["stopped"])
            reasons[reason] = reasons.get(reason, 0) + 1
        print("find_crossing stopped: " + "; ".join(f"{k} ({v} runs)" for k, v in reasons.items()))
    failed = [r for r in rows if "error" in r]
    for r in failed:
        print(f"failed: {r['method']}, {r['scenario']}, seed {r['seed']}: {r['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=10, help="seeds 0..N-1 per scenario (default: %(default)s)"
    )
    parser.add_argument(
        "--scenarios",
        default="clean,drifting",
        help="comma-separated simulated scenarios (default: %(default)s)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated, of: %(default)s (the stepped grid is the reference of the ratios)",
    )
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="write the raw per-seed rows to this file")
    args = parser.parse_args()
    from qbs_lab.sim.sample import SCENARIOS

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios or args.seeds < 1 or args.workers < 1:
        parser.error(
            f"--scenarios: unknown {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})"
            if unknown
            else "need at least one scenario, one seed and one worker"
        )
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not chosen or any(m not in METHODS for m in chosen):
        parser.error(f"--methods: choose from {', '.join(METHODS)}")
    missing = find_crossing_available() if "find_crossing" in chosen else None
    methods = [m for m in chosen if m != "find_crossing" or missing is None]
    # seed-major, so that the time left is about right from the first runs on
    tasks = [(m, sc, seed) for seed in range(args.seeds) for sc in scenarios for m in methods]
    progress = RunProgress(len(tasks))
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for row in pool.imap_unordered(one_run, tasks):
            rows.append(row)
            progress.step(row)
    rows.sort(key=lambda r: (r["scenario"], list(METHODS).index(r["method"]), r["seed"]))
    wall = sum(r["wall"] for r in rows)
    print(
        f"simulated lab, V_g = 15 V, seeds 0..{args.seeds - 1}, {len(tasks)} runs"
        f" ({format_duration(wall)} of wall time in {args.workers} workers)\n"
    )
    print_table(rows, scenarios, chosen, missing)
    if args.json:
        args.json.write_text(json.dumps(plain(rows), indent=1))
        print(f"rows: {args.json}")


if __name__ == "__main__":
    main()

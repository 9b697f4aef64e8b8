"""``qbs-lab station check``: connect the station, read every role once, print readings and limits."""

from __future__ import annotations

import sys
from typing import TextIO

from qbs_lab.station import Station

__all__ = ["print_station_check"]


def _rows(st: Station) -> list[tuple[str, str, str, str]]:
    cfg = st.config
    g, m, t = cfg.gate, cfg.magnet, cfg.thermometry
    r = st.resistance.measure()
    rows = [
        (
            "lockin",
            cfg.role_instrument("lockin") or "",
            f"R = {r.R:.6g} Ohm (X = {r.X:.4g} V, Y = {r.Y:.4g} V, I = {r.I * 1e9:.4g} nA);"
            f" tau {st.lockin.time_constant():g} s, {st.lockin.filter_slope()} dB/oct,"
            f" sens {r.sensitivity:g} V, {st.lockin.amplitude():g} V rms at {st.lockin.frequency():g} Hz"
            f"{'' if r.status.ok else ', OVERLOAD/UNLOCK'}",
            f"R_bias {cfg.bias_resistor:g} Ohm; settled to {cfg.settle_residual:g}"
            f" ({st.resistance.settle_time():.3g} s)",
        ),
        (
            "gate",
            cfg.role_instrument("gate") or "",
            f"V_g = {st.gate.voltage():.6g} V, I_leak = {st.gate.leakage():.3g} A,"
            f" output {'on' if st.gate.adapter.output() else 'off'}",
            f"[{g.min:g}, {g.max:g}] V, step <= {g.max_step:g} V, <= {g.max_rate:g} V/s,"
            f" leak <= {g.leakage_limit:g} A, safe {g.safe_value:g} V",
        ),
        (
            "magnet",
            cfg.role_instrument("magnet") or "",
            f"B = {st.magnet.field():.6g} T, {st.magnet.status().value},"
            f" rate {st.magnet.adapter.ramp_rate():g} T/s",
            f"|B| <= {m.max_field:g} T, <= {m.max_rate:g} T/s",
        ),
        (
            "thermometry",
            cfg.role_instrument("thermometry") or "",
            f"T_mc = {st.thermometry.temperature_mc():.5g} K (ch {st.thermometry.mixing_chamber}),"
            f" T_sample = {st.thermometry.temperature_sample():.5g} K (ch {st.thermometry.sample});"
            f" setpoint {st.thermometry.adapter.setpoint():g} K,"
            f" heater {st.thermometry.adapter.heater_range():g} A range",
            f"setpoint <= {t.max_temperature:g} K, heater range <= {t.max_heater_range:g} A",
        ),
    ]
    if st.rf is not None and cfg.rf is not None:
        a = st.rf.adapter
        rows.append(
            (
                "rf",
                cfg.role_instrument("rf") or "",
                f"{a.frequency() / 1e9:.6g} GHz, {a.power():g} dBm, output {'on' if a.output() else 'off'}",
                f"power <= {cfg.rf.max_power:g} dBm",
            )
        )
    return rows


def print_station_check(st: Station, out: TextIO = sys.stdout) -> None:
    """Print one line per role: the instrument, its live reading and its limits."""
    rows = _rows(st)
    w0 = max(len("role"), *(len(r[0]) for r in rows))
    w1 = max(len("instrument"), *(len(r[1]) for r in rows))
    print(f"{'role':<{w0}}  {'instrument':<{w1}}  live reading, then the station's limits", file=out)
    for role, inst, reading, limits in rows:
        print(f"{role:<{w0}}  {inst:<{w1}}  {reading}", file=out)
        print(f"{'':<{w0}}  {'':<{w1}}    limits: {limits}", file=out)

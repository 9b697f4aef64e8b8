"""A short tour of the simulated lab through the unmodified QCoDeS drivers, printing live readings.

It does what a physicist would do by hand at the fridge: gate on and ramped, excitation set, then for a
few mixing-chamber setpoints R(B) is read at a handful of fields, and the isotherms' crossing is compared
with the simulator's ground truth. Everything runs on the lab's virtual clock, so the printed times are
what the fridge would take while the wall time stays a few seconds.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from qbs_lab.sim.lab import SimLab

__all__ = ["run_demo"]


def _fmt_duration(seconds: float) -> str:
    h, rem = divmod(round(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def run_demo(
    lab: SimLab,
    *,
    V_g: float = 15.0,
    temperatures: Sequence[float] = (0.06, 0.12, 0.24),
    fields: Sequence[float] | None = None,
    out: TextIO = sys.stdout,
) -> dict[str, float]:
    """Take R(B) isotherms on ``lab`` with the QCoDeS drivers; return the crossing found and the truth.

    Units: V_g [V], temperatures [K], fields [T] (default 6 to 18 mT in 1.5 mT steps). Returns
    ``B_cross`` [T] and ``R_cross`` [Ohm] (from the two outer isotherms, linear interpolation) beside
    ``B_c`` and ``R_c`` from the ground truth.
    """
    from qcodes.instrument import Instrument
    from qcodes.instrument_drivers.american_magnetics import AMIModel430
    from qcodes.instrument_drivers.Keithley import Keithley2450
    from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372
    from qcodes.instrument_drivers.stanford_research import SR830

    # QCoDeS's SR830 driver warns about its own buffer parameters; nothing a user can act on
    warnings.filterwarnings("ignore", message=".*does not correctly pass kwargs.*")
    wall0, t0 = time.perf_counter(), lab.clock.now()
    truth = lab.truth_at(V_g)
    if fields is None:
        fields = np.linspace(0.006, 0.018, 9)  # T: a plain grid, as one would choose at the fridge
    mc = lab.state.fridge.control_channel
    sample_ch = next(ch for ch, stage in lab.state.fridge.channels.items() if stage == "sample")
    kw = {"visalib": lab.visalib}
    lockin = SR830("demo_lockin", lab.address("lockin"), **kw)
    gate = Keithley2450("demo_gate", lab.address("gate"), **kw)
    magnet = AMIModel430("demo_magnet", lab.address("magnet"), current_ramp_limit=0.06, **kw)
    fridge = LakeshoreModel372("demo_fridge", lab.address("fridge"), **kw)
    try:
        print(f"simulated lab: scenario {lab.scenario!r}, seed {lab.seed}", file=out)
        lockin.amplitude(0.01)
        lockin.time_constant(0.3)
        lockin.sensitivity(0.01)
        excitation = lockin.amplitude() / lab.state.bias_resistor
        print(f"excitation {excitation * 1e9:.2f} nA (0.01 V rms through 10 MOhm)", file=out)
        gate.source.function("voltage")
        gate.source.limit(1e-7)
        gate.source.voltage(0.0)
        gate.output_enabled(True)
        for v in np.linspace(0, V_g, 31)[1:]:
            gate.source.voltage(float(v))
            lab.clock.sleep(0.2)
        print(f"gate ramped to {gate.source.voltage():.2f} V", file=out)
        magnet.ramp_rate(0.0005)  # T/s
        heater = fridge.sample_heater
        heater.mode("closed_loop")
        heater.input_channel(mc)
        heater.P(10)
        heater.I(20)
        heater.D(0)
        heater.output_range("1mA")  # 120 uW into 120 Ohm: enough for ~0.35 K
        R: dict[float, list[float]] = {}
        header = f"{'t [h:m:s]':>10} {'T_mc [mK]':>10} {'T_s [mK]':>9} {'B [mT]':>8} {'R [kOhm]':>9}"
        print(header, file=out)
        for T in temperatures:
            heater.setpoint(T)
            lab.clock.sleep(300.0)  # the mixing chamber settles in a few 40 s time constants
            R[T] = []
            for B in fields:
                magnet.set_field(float(B))
                lab.clock.sleep(5 * 0.3 * 3)  # settle the lock-in's 24 dB/oct filter
                x, _ = lockin.snap("x", "y")
                R[T].append(x / excitation)
                T_mc = float(getattr(fridge, f"ch{mc:02d}").temperature())
                T_s = float(getattr(fridge, f"ch{sample_ch:02d}").temperature())
                print(
                    f"{_fmt_duration(lab.clock.now() - t0):>10} {T_mc * 1e3:10.1f} {T_s * 1e3:9.1f}"
                    f" {magnet.field() * 1e3:8.3f} {R[T][-1] / 1e3:9.3f}",
                    file=out,
                    flush=True,
                )
        magnet.set_field(0.0)
        for v in np.linspace(V_g, 0, 31)[1:]:
            gate.source.voltage(float(v))
            lab.clock.sleep(0.2)
        heater.output_range("off")
        lo, hi = np.asarray(R[temperatures[0]]), np.asarray(R[temperatures[-1]])
        diff = lo - hi
        i = int(np.flatnonzero(np.sign(diff[:-1]) != np.sign(diff[1:]))[0])
        f = diff[i] / (diff[i] - diff[i + 1])
        B_x = float(fields[i] + f * (fields[i + 1] - fields[i]))
        R_x = float(lo[i] + f * (lo[i + 1] - lo[i]))
        result = {"B_cross": B_x, "R_cross": R_x, "B_c": truth["B_c"], "R_c": truth["R_c"]}
        print(
            f"crossing of the {temperatures[0] * 1e3:.0f} mK and {temperatures[-1] * 1e3:.0f} mK"
            f" isotherms (linear between grid points): B = {B_x * 1e3:.2f} mT, R = {R_x:.0f} Ohm"
            f"  (truth: B_c = {truth['B_c'] * 1e3:.2f} mT, R_c = {truth['R_c']:.0f} Ohm)",
            file=out,
        )
        print(
            f"fridge time {_fmt_duration(lab.clock.now() - t0)}, wall time"
            f" {time.perf_counter() - wall0:.1f} s; gate back at 0 V, field at 0 T, heater off",
            file=out,
        )
        return result
    finally:
        for inst in (lockin, gate, magnet, fridge):
            if Instrument.exist(inst.name):
                inst.close()

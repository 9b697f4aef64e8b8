"""An overnight soak of the simulated lab: temperature steps and magnet ramps through the QCoDeS drivers.

Used to check that a long virtual sequence runs fast and repeats bit-identically for a seed
(tests/test_physics_through_drivers.py, benchmarks/virtual_overnight.py). Each step sets a new
mixing-chamber setpoint, waits for it, ramps the field up and back with the AMI 430 driver's own
blocking ``set_field`` (its polling sleeps run on the virtual clock) and records lock-in and
thermometer readings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbs_lab.sim.lab import SimLab

__all__ = ["run_soak"]


def run_soak(
    lab: SimLab,
    *,
    hours: float = 8.0,
    step_minutes: float = 20.0,
    field: float = 0.03,
    ramp_rate: float = 1e-4,
    poll_interval: float = 0.5,
) -> list[tuple[float, ...]]:
    """Run temperature steps and field ramps for ``hours`` of lab time.

    Units: field [T], ramp_rate [T/s], poll_interval [s]. Returns one row per reading:
    (time [s], setpoint [K], T_mc [K], B [T], X [V], Y [V]).
    """
    from qcodes.instrument_drivers.american_magnetics import AMIModel430
    from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372
    from qcodes.instrument_drivers.stanford_research import SR830

    kw: dict[str, Any] = {"visalib": lab.visalib}
    magnet = AMIModel430("soak_magnet", lab.address("magnet"), current_ramp_limit=0.06, **kw)
    fridge = LakeshoreModel372("soak_fridge", lab.address("fridge"), **kw)
    lockin = SR830("soak_lockin", lab.address("lockin"), **kw)
    rows: list[tuple[float, ...]] = []
    try:
        magnet.ramping_state_check_interval(poll_interval)
        magnet.ramp_rate(ramp_rate)
        mc = lab.state.fridge.control_channel
        heater = fridge.sample_heater
        heater.mode("closed_loop")
        heater.input_channel(mc)
        heater.output_range("1mA")
        thermometer = getattr(fridge, f"ch{mc:02d}")
        t_end = lab.clock.now() + hours * 3600.0
        setpoints = np.geomspace(0.03, 0.6, 12)
        k = 0
        while lab.clock.now() < t_end:
            step_end = min(lab.clock.now() + step_minutes * 60.0, t_end)
            setpoint = float(setpoints[k % len(setpoints)])
            heater.setpoint(setpoint)
            lab.clock.sleep(0.25 * step_minutes * 60.0)
            for target in (field, 0.0):
                magnet.set_field(target)
                x, y = lockin.snap("x", "y")
                rows.append((lab.clock.now(), setpoint, thermometer.temperature(), magnet.field(), x, y))
            lab.clock.sleep(max(step_end - lab.clock.now(), 0.0))
            k += 1
        heater.output_range("off")
    finally:
        for inst in (magnet, fridge, lockin):
            inst.close()
    return rows

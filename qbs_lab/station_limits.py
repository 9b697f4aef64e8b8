"""What a station file's limits may be: each instrument's own range, and physical sense.

A limit the instrument cannot reach is a typo or a copy from another lab (a gate at ±1000 V on a
Keithley 2450, +100 dBm of RF); a limit no dilution refrigerator needs (300 K on the mixing chamber,
10^308 T) is no limit at all. :func:`limit_problems` refuses both, and bounds the slow end too: a
ramp rate so low that a full-range ramp takes more than :data:`MAX_RAMP_TIME` would make every run
(and ``qbs-lab estimate``) last for ever.

The instruments' ranges are the drivers' own QCoDeS parameter validators where they have one (cited
by parameter), the manual's figures otherwise. Keys are the driver class names of
:data:`qbs_lab.drivers.adapters.ADAPTERS`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "INSTRUMENT_RANGES",
    "MAX_RAMP_STEPS",
    "MAX_RAMP_TIME",
    "PHYSICAL",
    "excitation_problem",
    "limit_problems",
]

#: the longest a full-range ramp at a role's max_rate may take [s]
MAX_RAMP_TIME = 48 * 3600.0
#: the most steps a full-range gate ramp at max_step may take (each is an instrument write)
MAX_RAMP_STEPS = 1_000_000

#: driver class -> limit key -> (lowest, highest) the instrument can do, and where the figure comes from
INSTRUMENT_RANGES: dict[str, dict[str, tuple[float, float, str]]] = {
    # gate sources: |V| the source can output [V], current compliance [A]
    "Keithley2450": {
        "voltage": (-210.0, 210.0, "the Keithley 2450 sources at most ±210 V (200 V range)"),
        "current_limit": (1e-9, 1.05, "the Keithley 2450's current limit is 1 nA to 1.05 A"),
    },
    "Keithley2400": {
        "voltage": (-210.0, 210.0, "the Keithley 2400 sources at most ±210 V (200 V range)"),
        "current_limit": (1e-9, 1.05, "the Keithley 2400's compliance is at most 1.05 A"),
    },
    "YokogawaGS200": {
        "voltage": (-32.0, 32.0, "the Yokogawa GS200 sources at most ±32 V (30 V range)"),
        # QCoDeS YokogawaGS200.current_limit: Numbers(1e-3, 200e-3)
        "current_limit": (1e-3, 0.2, "the Yokogawa GS200's current protection is 1 mA to 200 mA"),
    },
    # thermometry: the largest heater range [A]
    "LakeshoreModel372": {
        "max_heater_range": (0.0, 0.1, "the Lakeshore 372's sample heater goes up to its 100 mA range"),
    },
    "OxfordTriton": {
        # QCoDeS OxfordTriton._heater_range_curr: 0.316 ... 100 mA
        "max_heater_range": (0.0, 0.1, "the Oxford Triton's heater goes up to its 100 mA range"),
    },
    # RF sources [dBm]; QCoDeS RohdeSchwarzSGS100A.power: Numbers(-120, 25)
    "RohdeSchwarzSGS100A": {
        "max_power": (-120.0, 25.0, "the R&S SGS100A's output power is -120 to +25 dBm"),
    },
    # lock-in sine output [V rms]: QCoDeS SR830.amplitude Numbers(0.004, 5), SR86x.amplitude (0, 2)
    "SR830": {"excitation": (0.004, 5.0, "the SR830's sine output is 4 mV to 5 V rms")},
    "pymeasure.instruments.srs.SR830": {
        "excitation": (0.004, 5.0, "the SR830's sine output is 4 mV to 5 V rms")
    },
    "SR860": {"excitation": (1e-9, 2.0, "the SR860's sine output is 1 nV to 2 V rms")},
}

#: (role, key) -> (lowest, highest, why) for any instrument: what a dilution-fridge lab can mean
PHYSICAL: dict[tuple[str, str], tuple[float, float, str]] = {
    ("magnet", "max_field"): (0.0, 20.0, "no superconducting magnet on a dilution fridge exceeds 20 T"),
    ("magnet", "max_rate"): (0.0, 1.0, "no superconducting magnet ramps faster than 1 T/s"),
    ("magnet", "poll"): (0.01, 60.0, "the magnet's state is read every 0.01 s to 60 s"),
    ("thermometry", "max_temperature"): (
        0.0,
        5.0,
        "a dilution fridge's mixing chamber is not regulated above ~5 K",
    ),
    ("thermometry", "max_heater_range"): (0.0, 1.0, "no mixing-chamber heater takes more than 1 A"),
    ("gate", "leakage_limit"): (0.0, 1.0, "a gate leaking more than 1 A has long broken down"),
    ("rf", "max_power"): (-150.0, 30.0, "an RF line into a dilution fridge takes at most +30 dBm"),
}


def _driver_key(driver_type: str) -> str:
    return driver_type if driver_type in INSTRUMENT_RANGES else driver_type.rsplit(".", 1)[-1]


def limit_problems(role: str, limits: dict[str, float], driver_type: str | None) -> list[tuple[str, str]]:
    """(key, message) for every limit of ``role`` (``safety.ROLE`` as numbers) that the instrument
    ``driver_type`` cannot do or that makes no physical sense; none: []."""
    out: list[tuple[str, str]] = []
    ranges = INSTRUMENT_RANGES.get(_driver_key(driver_type or ""), {})
    for key, value in limits.items():
        name = "voltage" if role == "gate" and key in ("min", "max", "safe_value") else key
        bounds = PHYSICAL.get((role, key))
        if name in ranges and not ranges[name][0] <= value <= ranges[name][1]:
            out.append((key, f"{value:g} is beyond the instrument: {ranges[name][2]}"))
        elif bounds and not bounds[0] <= value <= bounds[1]:
            low = f"> {bounds[0]:g}" if bounds[0] == 0 else f">= {bounds[0]:g}"
            out.append((key, f"{value:g} is implausible: must be {low} and <= {bounds[1]:g} ({bounds[2]})"))
    reported = {key for key, _ in out}  # a ramp is timed only from limits that passed
    out.extend(_ramp_problems(role, {k: v for k, v in limits.items() if k not in reported}))
    return out


def _ramp_problems(role: str, limits: dict[str, float]) -> list[tuple[str, str]]:
    """A rate (or step) so small that a full-range ramp would take for ever."""
    if role == "gate" and {"min", "max"} <= set(limits) and limits["max"] > limits["min"]:
        span = limits["max"] - limits["min"]
        out = []
        rate, step = limits.get("max_rate", 0.0), limits.get("max_step", 0.0)
        if rate > 0 and span / rate > MAX_RAMP_TIME:
            out.append(
                (
                    "max_rate",
                    f"{rate:g} V/s is too slow: a ramp from min to max would take"
                    f" {span / rate / 3600:.3g} h (at most {MAX_RAMP_TIME / 3600:g} h; the lowest rate is"
                    f" {span / MAX_RAMP_TIME:.2g} V/s)",
                )
            )
        if step > 0 and span / step > MAX_RAMP_STEPS:
            out.append(
                (
                    "max_step",
                    f"{step:g} V is too small: a ramp from min to max would take {span / step:.3g} steps"
                    f" (at most {MAX_RAMP_STEPS:g}; the smallest step is {span / MAX_RAMP_STEPS:.2g} V)",
                )
            )
        if step > span:
            out.append(("max_step", f"{step:g} V is larger than the whole range max - min ({span:g} V)"))
        return out
    if role == "magnet" and limits.get("max_field", 0.0) > 0 and limits.get("max_rate", 0.0) > 0:
        span, rate = 2 * limits["max_field"], limits["max_rate"]
        if span / rate > MAX_RAMP_TIME:
            return [
                (
                    "max_rate",
                    f"{rate:g} T/s is too slow: a ramp from -max_field to max_field would take"
                    f" {span / rate / 3600:.3g} h (at most {MAX_RAMP_TIME / 3600:g} h; the lowest rate is"
                    f" {span / MAX_RAMP_TIME:.2g} T/s)",
                )
            ]
    return []


def excitation_problem(lockin_type: str | None, excitation: float) -> str | None:
    """Why the lock-in ``lockin_type`` cannot output ``excitation`` [V rms], or None."""
    ranges: dict[str, Any] = INSTRUMENT_RANGES.get(_driver_key(lockin_type or ""), {})
    if "excitation" in ranges:
        low, high, why = ranges["excitation"]
        if not low <= excitation <= high:
            return f"{excitation:g} is beyond the instrument: {why}"
    return None

"""A lock-in's n-stage RC output filter: step response, settle time, equivalent noise bandwidth.

Shared by the resistance measurement (how long to wait after a change) and the simulated lock-in.

>>> round(settle_fraction(3.0, 1.0, 4), 4)
0.3528
>>> round(settle_time(0.3, 24, 1e-3), 2)   # 24 dB/oct, 0.3 s: settled to 0.1 % after 13 tau
3.92
"""

from __future__ import annotations

import math

__all__ = ["ENBW_FACTOR", "settle_fraction", "settle_time", "stages"]

#: ENBW * tau for 1..4 RC stages
ENBW_FACTOR = {1: 1 / 4, 2: 1 / 8, 3: 3 / 32, 4: 5 / 64}


def stages(slope_db_per_octave: int) -> int:
    """RC stages of a filter slope: 6, 12, 18, 24 dB/oct -> 1..4."""
    return {6: 1, 12: 2, 18: 3, 24: 4}[slope_db_per_octave]


def settle_fraction(t: float, tau: float, n_stages: int) -> float:
    """Fraction of a step an ``n_stages``-stage RC filter has reached after ``t`` seconds."""
    x = t / tau
    return 1.0 - math.exp(-x) * sum(x**k / math.factorial(k) for k in range(n_stages))


def settle_time(tau: float, slope_db_per_octave: int, residual: float) -> float:
    """Seconds after a step until the output is within ``residual`` (fraction) of its final value."""
    n = stages(slope_db_per_octave)
    lo, hi = 0.0, tau
    while 1.0 - settle_fraction(hi, tau, n) > residual:
        hi *= 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 1.0 - settle_fraction(mid, tau, n) > residual else (lo, mid)
    return hi

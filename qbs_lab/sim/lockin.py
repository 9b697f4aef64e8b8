"""The lock-in amplifier's physics: sine output, the n-stage RC output filter and its noise.

The demodulated input is a phasor (complex, V rms). The output follows it through ``n`` identical RC
stages of time constant ``tau`` (slope 6/12/18/24 dB/oct = 1..4 stages), so a reading taken soon after a
step is still biased toward the old value: after a step, the output of an n-stage filter has reached
1 - exp(-t/tau) * sum_{k<n} (t/tau)^k / k! of it.

Noise on each of X and Y is Gaussian with rms sqrt(e_n^2 + 4 k_B T_e R) * sqrt(ENBW), ENBW being the
equivalent noise bandwidth of the filter: 1/(4 tau), 1/(8 tau), 3/(32 tau), 5/(64 tau) for 1..4 stages.
"""

from __future__ import annotations

import math

import numpy as np

from qbs_lab.filters import ENBW_FACTOR, settle_fraction, stages

__all__ = ["ENBW_FACTOR", "Lockin", "settle_fraction"]


class Lockin:
    """State of the lock-in's reference output and demodulator filter (SI units)."""

    def __init__(self, noise_density: float = 6e-9) -> None:
        self.noise_density = noise_density  # V/sqrt(Hz), input noise
        self.amplitude = 0.01  # V rms, sine out
        self.frequency = 13.777  # Hz
        self.phase = 0.0  # deg, reference phase shift
        self.harmonic = 1
        self.time_constant = 0.3  # s
        self.slope = 24  # dB/oct
        self.sensitivity = 1e-3  # V rms full scale
        self.sync_filter = False
        self.aux_out = [0.0, 0.0, 0.0, 0.0]
        self.aux_in_values = [0.0, 0.0, 0.0, 0.0]
        self.input: complex = 0j  # present demodulated input phasor, V rms
        self.input_noise_density = noise_density  # V/sqrt(Hz) incl. Johnson noise (set by the lab)
        self.force_overload = False  # fault: input overload
        self._stages: list[complex] = [0j] * 4

    @property
    def stages(self) -> int:
        return stages(self.slope)

    def memory(self) -> float:
        """Seconds after which the filter has forgotten its past (to < 1e-9)."""
        return (22.0 + 4.0 * self.stages) * self.time_constant

    def settle(self, value: complex) -> None:
        """Set every stage to ``value`` (the filter has fully settled on it)."""
        self._stages = [value] * 4

    def step(self, dt: float, value: complex) -> None:
        """Advance the filter by ``dt`` with the input held at ``value`` (exact for that input).

        With e_k the k-th stage's distance from the input, the cascade's solution is
        e_k(t + dt) = exp(-x) * sum_{j<=k} e_j(t) * x^(k-j) / (k-j)!, x = dt/tau.
        """
        x = dt / self.time_constant
        decay = math.exp(-x)
        # all four stages run whatever the slope: the output taps stage n, so a slope change reads a
        # stage that has been following the input all along
        e = [stage - value for stage in self._stages]
        powers = [x**m / math.factorial(m) for m in range(4)]
        for k in range(4):
            self._stages[k] = value + decay * sum(e[j] * powers[k - j] for j in range(k + 1))

    def output(self) -> complex:
        """Filtered output phasor (no noise), rotated by the reference phase."""
        return self._stages[self.stages - 1] * complex(
            math.cos(math.radians(-self.phase)), math.sin(math.radians(-self.phase))
        )

    def noise_rms(self) -> float:
        """Rms noise [V] on each of X and Y at the present filter settings."""
        enbw = ENBW_FACTOR[self.stages] / self.time_constant
        return self.input_noise_density * math.sqrt(enbw)

    def read_xy(self, rng: np.random.Generator) -> tuple[float, float]:
        """X and Y [V rms] at one instant, with noise."""
        z = self.output()
        s = self.noise_rms()
        return z.real + float(rng.normal(0.0, s)), z.imag + float(rng.normal(0.0, s))

    def output_overload(self) -> bool:
        z = self.output()
        return abs(z.real) > self.sensitivity or abs(z.imag) > self.sensitivity

    def input_overload(self) -> bool:
        # dynamic reserve of 100 on the chosen sensitivity, and the 1 V rms input limit
        return self.force_overload or abs(self.input) > min(100 * self.sensitivity, 1.0)

    def aux_in(self, index: int) -> float:
        return self.aux_in_values[index]

"""The simulated lab's physical state: sample, cryostat, magnet, gate, lock-in and RF line, on one clock.

:class:`LabState` is what the emulators observe and drive. It integrates time lazily: every message an
emulator receives first calls :meth:`LabState.sync`, which brings every process up to the clock's
present (the cryostat in steps of at most 0.5 s, the magnet exactly, the lock-in filter finely over the
last stretch it still remembers). So a virtual clock can jump hours at once, and a run is bit-identical
for a seed.

The measurement chain: the lock-in's sine output drives a current I = V_osc / (R_bias + R) through the
sample (a bias resistor), and the lock-in reads the voltage I * Z across the array, where
Z = R / (1 + j*omega*R*C_shunt) (a small line capacitance gives a small out-of-phase Y).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from qbs_lab.clock import Clock, VirtualClock
from qbs_lab.sim.cryostat import Cryostat, CryostatParams
from qbs_lab.sim.gate import Gate
from qbs_lab.sim.lockin import Lockin
from qbs_lab.sim.magnet import Magnet
from qbs_lab.sim.sample import K_B, SampleModel, SampleParams, scenario_params

__all__ = ["LabState", "RfSource"]


@dataclass
class RfSource:
    """The RF generator's output (its line ends near the sample)."""

    frequency: float = 1e9  # Hz
    power: float = -30.0  # dBm
    output_on: bool = False


class LabState:
    """Everything physical in the simulated lab (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        sample: SampleParams | None = None,
        cryostat: CryostatParams | None = None,
        bias_resistor: float = 10e6,
        C_shunt: float = 1e-9,
        scenario: str = "clean",
    ) -> None:
        self.clock = clock
        self.scenario = scenario
        self.lock = threading.RLock()  # one lock for the whole lab: transports run in threads
        self.sample = SampleModel(sample or SampleParams())
        self.fridge = Cryostat(cryostat)
        self.magnet = Magnet()
        self.gate = Gate()
        self.lockin = Lockin()
        self.rf = RfSource()
        self.bias_resistor = bias_resistor  # Ohm
        self.C_shunt = C_shunt  # F
        self._t = clock.now()
        self.lockin.input = self.lockin_input()
        self.lockin.settle(self.lockin.input)

    @classmethod
    def create(
        cls,
        clock: Clock | None = None,
        scenario: str = "clean",
        seed: int = 0,
        **kwargs: Any,
    ) -> LabState:
        """A lab in a named scenario (``seed`` is accepted for symmetry; noise lives in the emulators)."""
        return cls(clock or VirtualClock(), scenario_params(scenario), scenario=scenario, **kwargs)

    # -- the sample as the instruments see it --------------------------------------------------
    def operating_point(self) -> dict[str, float]:
        """The sample's present conditions: V_g [V], B [T], T [K] (bath), T_e [K], I [A], R [Ohm]."""
        V_g = self.gate.output_voltage()
        B = self.magnet.magnet_field()
        T = self.fridge.T_sample
        rf = self.rf.power if self.rf.output_on else None
        T_e = self.sample.electron_temperature(T, 0.0, rf)
        R = self.sample.resistance(V_g, B, T_e)
        for _ in range(20):  # self-consistent Joule heating: R depends on T_e, which depends on I^2 R
            I = self.lockin.amplitude / (self.bias_resistor + R)
            T_e = self.sample.electron_temperature(T, I * I * R, rf)
            R_new = self.sample.resistance(V_g, B, T_e)
            converged = abs(R_new - R) <= 1e-9 * max(R, 1.0)
            R = R_new
            if converged:
                break
        I = self.lockin.amplitude / (self.bias_resistor + R)
        return {"V_g": V_g, "B": B, "T": T, "T_e": T_e, "I": I, "R": R}

    def lockin_input(self) -> complex:
        """The demodulated voltage phasor [V rms] across the array."""
        op = self.operating_point()
        omega = 2 * math.pi * self.lockin.frequency * self.lockin.harmonic
        R = op["R"]
        Z = R / complex(1.0, omega * R * self.C_shunt)
        self.lockin.input_noise_density = math.sqrt(self.lockin.noise_density**2 + 4 * K_B * op["T_e"] * R)
        return op["I"] * Z

    # -- time -------------------------------------------------------------------------------------
    def _advance_slow(self, dt: float) -> None:
        self.fridge.advance(dt)
        self.magnet.advance(dt)

    def sync(self) -> None:
        """Bring every process up to the clock's present."""
        with self.lock:
            self._sync()

    def _sync(self) -> None:
        t1 = self.clock.now()
        dt = t1 - self._t
        if dt <= 0:
            return
        memory = self.lockin.memory()
        if dt > memory:
            # the filter forgets what happens before its memory: only the slow processes matter there
            self._advance_slow(dt - memory)
            self.lockin.settle(self.lockin_input())
            dt = memory
        # the filter update is exact for an input held over a step; the input moves on the scale of
        # seconds (magnet ramp, thermal lag), so half a time constant (at most 0.5 s) is fine enough.
        # The input is held at its value mid-step: for a ramping input the filter then lags by its true
        # n·tau (held at the step's end, it would lag half a step less than a real lock-in)
        h = min(self.lockin.time_constant / 2.0, self.fridge.max_step)
        while dt > 1e-12:
            step = min(h, dt)
            self._advance_slow(step / 2)
            value = self.lockin_input()
            self._advance_slow(step / 2)
            self.lockin.input = value
            self.lockin.step(step, value)
            dt -= step
        self._t = t1

    # -- ground truth -----------------------------------------------------------------------------
    def truth(self, V_g: float | None = None) -> dict[str, Any]:
        """The sample's ground truth (see :meth:`SampleModel.truth`) with the scenario's name."""
        return {"scenario": self.scenario, **self.sample.truth(V_g)}

"""The roles procedures talk to, with the station's safety rules applied on every set.

A role wraps an adapter (:mod:`qbs_lab.drivers.protocols`) and a limits record from the station file.
Every target is checked against the limits *before* anything is sent (:class:`LimitError`); ramps are
made here, in steps no larger than ``max_step`` at no more than ``max_rate``, timed on the station's
clock, so they are the same whatever the driver. Units: V, A, T, T/s, K, dBm, s.

>>> gate.ramp_to(5.0)          # doctest: +SKIP   steps of <= max_step V at <= max_rate V/s
>>> magnet.ramp_to(0.02)       # doctest: +SKIP   rate set on the supply, waits for HOLDING
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from qbs_lab.drivers.errors import LeakageError, LimitError, QuenchError, SafetyError
from qbs_lab.drivers.protocols import (
    GateSourceAdapter,
    MagnetAdapter,
    MagnetStatus,
    RfSourceAdapter,
    ThermometryAdapter,
)

from qbs_lab.clock import Clock

__all__ = [
    "GateLimits",
    "GateRole",
    "MagnetLimits",
    "MagnetRole",
    "RfLimits",
    "RfRole",
    "ThermometryLimits",
    "ThermometryRole",
]


@dataclass(frozen=True)
class GateLimits:
    """Gate safety [V, V, V, V/s, A, V]: range, largest step, highest rate, leakage limit, safe value."""

    min: float
    max: float
    max_step: float
    max_rate: float
    leakage_limit: float
    safe_value: float = 0.0
    current_limit: float = 1e-7  # A, the source's compliance, set when the role starts

    def check(self, volts: float) -> None:
        if not (math.isfinite(volts) and self.min <= volts <= self.max):
            raise LimitError(f"gate voltage {volts!r} V is outside the limits [{self.min}, {self.max}] V")


class GateRole:
    """The gate: ramps in limited steps at a limited rate, watching the leakage at every step.

    With a source that cannot measure its current (its adapter returns NaN) the leakage check cannot
    trip: such a gate relies on its compliance (``current_limit``) alone.
    """

    def __init__(self, adapter: GateSourceAdapter, limits: GateLimits, clock: Clock) -> None:
        limits.check(limits.safe_value)
        self.adapter, self.limits, self.clock = adapter, limits, clock
        adapter.set_current_limit(limits.current_limit)
        self._level: float | None = None  # the level this role last sent
        #: seconds of this role's waits the physics needs (travel / max_rate), summed over its ramps
        self.floor = 0.0

    def voltage(self) -> float:
        return self.adapter.voltage()

    def leakage(self) -> float:
        return self.adapter.leakage_current()

    def ramp_to(self, target: float) -> None:
        """Ramp to ``target`` [V] in steps of at most ``max_step``, at most ``max_rate`` V/s.

        Raises :class:`LimitError` (nothing sent) for a target outside the limits, and
        :class:`LeakageError` when the leakage exceeds its limit: the gate is then ramped back to the
        safe value first.
        """
        self.limits.check(target)
        if not self.adapter.output():
            self.adapter.set_voltage(self.limits.safe_value)
            self.adapter.set_output(True)
        self._ramp(target, check_leakage=True)

    def to_safe_value(self) -> None:
        """Ramp back to the safe value (at the same step and rate limits), leakage unchecked."""
        self._ramp(self.limits.safe_value, check_leakage=False)

    def _ramp(self, target: float, check_leakage: bool) -> None:
        lim = self.limits
        start = self.adapter.voltage()
        if self._level is not None and abs(self._level - start) <= 1e-6 * max(1.0, abs(start)):
            start = self._level  # the readback is the sent level, rounded: step from the exact one
        # equal steps, the largest allowed (a drivers' rounding of a sent level, at its resolution, stays)
        n = max(1, math.ceil(abs(target - start) / lim.max_step - 1e-9))
        dwell = abs(target - start) / n / lim.max_rate
        self.floor += abs(target - start) / lim.max_rate  # the rate limit's own time: the physics
        for k in range(1, n + 1):
            v = target if k == n else start + (target - start) * k / n
            lim.check(v)
            self.clock.sleep(dwell)  # the step may not come sooner than the rate allows
            self.adapter.set_voltage(v)
            self._level = v
            if check_leakage:
                current = self.adapter.leakage_current()
                # NaN: a source that cannot measure current (e.g. a GS200) cannot trip this check
                if math.isfinite(current) and abs(current) > lim.leakage_limit:
                    self._ramp(lim.safe_value, check_leakage=False)
                    raise LeakageError(
                        f"gate leakage {current:.3g} A above the limit {lim.leakage_limit:.3g} A at"
                        f" {v:.4g} V: ramp stopped, gate back at {lim.safe_value} V",
                        voltage=v,
                        current=current,
                        limit=lim.leakage_limit,
                    )


@dataclass(frozen=True)
class MagnetLimits:
    """Magnet safety: largest |field| [T] and highest ramp rate [T/s]; ``poll`` [s] between state reads."""

    max_field: float
    max_rate: float
    poll: float = 0.5
    #: [s] between state reads near a ramp's expected arrival (and backing off after it)
    fine_poll: float = 0.02

    def check(self, field: float, rate: float) -> None:
        if not (math.isfinite(field) and abs(field) <= self.max_field):
            raise LimitError(f"field {field!r} T is outside the limit |B| <= {self.max_field} T")
        if not (math.isfinite(rate) and 0 < rate <= self.max_rate):
            raise LimitError(f"ramp rate {rate!r} T/s is outside (0, {self.max_rate}] T/s")


class MagnetRole:
    """The magnet: the rate goes to the supply itself, then the role waits on the clock for HOLDING.

    The wait ends when the physics does: the ramp should arrive after travel / rate, so the role reads
    the supply's state every ``poll`` seconds until then (a quench is seen within that) and sends the
    read that confirms HOLDING so that it reaches the supply as the ramp arrives (early by the time a
    state read takes, measured on the clock); past the arrival it reads every ``fine_poll`` seconds,
    backing off if the supply is slower (switch heating, a slower ramp segment). A step from a held
    field asks nothing before it: the rate this role set, and the field and state its last ramp
    confirmed, are known. A field step costs its ramp time plus the message that starts it.
    """

    #: a state read is sent this much after the expected arrival less its own time [s]: the supply's
    #: arithmetic of the arrival may differ from ours in the last bits
    ARRIVAL_MARGIN = 1e-6

    def __init__(self, adapter: MagnetAdapter, limits: MagnetLimits, clock: Clock) -> None:
        self.adapter, self.limits, self.clock = adapter, limits, clock
        #: seconds of this role's waits the physics needs (travel / rate), summed over its ramps
        self.floor = 0.0
        self._rate: float | None = None  # the ramp rate this role set and read back [T/s]
        self._held: float | None = None  # the field the last ramp of this role ended holding at [T]
        self._lead = 0.0  # [s] the arrival's read is sent this early: the time a state read takes
        self._lead_share = 1.0  # of the read's time; halved each time a read sent so early was early

    def field(self) -> float:
        return self.adapter.field()

    def status(self) -> MagnetStatus:
        status = self.adapter.status()
        if status is not MagnetStatus.HOLDING:
            self._held = None  # seen moving, paused or quenched: the next ramp reads the field again
        return status

    def ramp_to(self, target: float, rate: float | None = None) -> None:
        """Ramp to ``target`` [T] at ``rate`` [T/s] (default: the limit) and wait until it holds.

        Raises :class:`LimitError` before anything is sent, :class:`QuenchError` on a quench (seen
        within ``poll`` seconds during the ramp, and by the read at its arrival), :class:`SafetyError`
        when the supply stops ramping or never holds.
        """
        rate = self.limits.max_rate if rate is None else rate
        self.limits.check(target, rate)
        if self._held is None:  # nothing confirmed of the supply: its state, then its field
            self._raise_if_quenched()
            start = self.adapter.field()
        else:  # held by this role's last ramp, confirmed by a read: a quench since shows at arrival
            start = self._held
        self._set_rate(rate)
        self._held = None  # until this ramp holds
        self.adapter.start_ramp(target)
        travel = abs(target - start) / rate
        self.floor += travel
        arrival = self.clock.now() + travel
        # the ramp's own duration, plus switch heating and a margin: a supply that never holds is a fault
        deadline = self.clock.now() + 1.5 * travel + 300.0
        late = self.limits.fine_poll
        due = False  # the read timed to reach the supply at the arrival is being sent
        timed = False  # and its time was taken
        while True:
            wait = arrival + self.ARRIVAL_MARGIN - self._lead - self.clock.now()
            if wait > self.limits.poll:
                self.clock.sleep(self.limits.poll)  # during the ramp: a state read every poll
            elif not due:
                self.clock.sleep(max(0.0, wait))  # the read reaches the supply as the ramp arrives
                due = True
            else:  # the supply is slower than its rate says (switch heating, a slower segment)
                self.clock.sleep(late)
                late = min(2 * late, self.limits.poll)
            sent = self.clock.now()
            status = self._raise_if_quenched()
            if due and not timed:  # the read at the arrival: time it
                timed = True
                if status is MagnetStatus.RAMPING:
                    self._lead_share /= 2  # it may have been sent too early: send later
                self._lead = self._lead_share * max(0.0, self.clock.now() - sent)
            if status in (MagnetStatus.HOLDING, MagnetStatus.AT_ZERO):
                self._held = target if status is MagnetStatus.HOLDING else 0.0
                return
            if status not in (MagnetStatus.RAMPING, MagnetStatus.SWITCH):
                raise SafetyError(f"magnet stopped ramping to {target} T: supply is {status.value}")
            if self.clock.now() > deadline:
                self.adapter.pause()
                raise SafetyError(
                    f"magnet did not reach {target} T in time: ramp paused at {self.field():g} T"
                )

    def sweep_to(
        self,
        target: float,
        rate: float,
        interval: float,
        sample: Callable[[], None],
        tail: float = 0.0,
    ) -> None:
        """Ramp to ``target`` [T] at ``rate`` [T/s], calling ``sample`` every ``interval`` [s] on the
        clock while the field moves, and for ``tail`` seconds once it holds (a lagging filter's last
        readings). The same limits and rate handling as :meth:`ramp_to` (nothing sent outside them);
        the supply's state is read every ``poll`` seconds and at the first sample past the expected
        arrival (a quench stops the sweep; the hold is seen within a sample of the arrival).
        """
        self.limits.check(target, rate)
        self._raise_if_quenched()
        self._set_rate(rate)
        start = self._held if self._held is not None else self.adapter.field()
        self._held = None
        travel = abs(target - start) / rate
        self.floor += travel
        t0 = self.clock.now()
        deadline = t0 + 1.5 * travel + 300.0
        self.adapter.start_ramp(target)
        arrival = self.clock.now() + travel
        next_state = t0
        held_at: float | None = None
        k = 0
        while held_at is None or self.clock.now() < held_at + tail:
            k += 1
            self.clock.sleep(max(0.0, t0 + k * interval - self.clock.now()))
            sample()
            now = self.clock.now()
            if held_at is not None or now < next_state:
                continue
            # every poll, and at the first sample past the expected arrival: the hold is seen then
            next_state = now + self.limits.poll if now < arrival else now + self.limits.fine_poll
            if now < arrival < next_state:
                next_state = arrival
            status = self._raise_if_quenched()
            if status in (MagnetStatus.HOLDING, MagnetStatus.AT_ZERO):
                self._held = target if status is MagnetStatus.HOLDING else 0.0
                held_at = now
            elif status not in (MagnetStatus.RAMPING, MagnetStatus.SWITCH):
                raise SafetyError(f"magnet stopped sweeping to {target} T: supply is {status.value}")
            elif now > deadline:
                self.adapter.pause()
                raise SafetyError(
                    f"magnet did not reach {target} T in time: sweep paused at {self.field():g} T"
                )

    def make_persistent(self) -> None:
        """Leave the magnet persistent at its present field: switch heater off, supply to zero current.

        Raises :class:`SafetyError` for a supply or magnet without a persistent switch (it then holds
        its field), and when the supply does not reach zero current in time.
        """
        persist = getattr(self.adapter, "make_persistent", None)
        has_switch = getattr(self.adapter, "has_persistent_switch", None)
        if persist is None or has_switch is None or not has_switch():
            raise SafetyError("the magnet has no persistent switch: it holds its field on the supply")
        self._raise_if_quenched()
        field = self.adapter.field()
        self._held = None
        persist()
        # switch cooling, then the supply's current ramps down at the set rate
        deadline = self.clock.now() + 1.5 * abs(field) / self.limits.max_rate + 600.0
        while (status := self._raise_if_quenched()) is not MagnetStatus.AT_ZERO:
            if self.clock.now() > deadline:
                raise SafetyError(
                    f"the supply did not reach zero current for persistent mode ({status.value})"
                )
            self.clock.sleep(self.limits.poll)

    def _set_rate(self, rate: float) -> None:
        """Set ``rate`` (already checked) on the supply unless this role set it last; read it back."""
        if self._rate != rate and abs(self.adapter.ramp_rate() - rate) > 1e-6 * rate:
            self._rate = None
            self.adapter.set_ramp_rate(rate)
            taken = self.adapter.ramp_rate()
            if abs(taken - rate) > 1e-6 * rate:  # the supply refused it: do not ramp at the old rate
                raise SafetyError(f"the supply did not take the ramp rate {rate:g} T/s (it has {taken:g})")
        self._rate = rate

    def _raise_if_quenched(self) -> MagnetStatus:
        status = self.adapter.status()
        if status is not MagnetStatus.HOLDING:
            self._held = None  # a quench, a pause, a ramp from the front panel: read the field again
        if status is MagnetStatus.QUENCH:
            raise QuenchError("the magnet quenched: field lost, supply latched in QUENCH")
        return status


@dataclass(frozen=True)
class ThermometryLimits:
    """Thermometry safety: highest setpoint [K] and largest heater range [A]."""

    max_temperature: float
    max_heater_range: float


class ThermometryRole:
    """Mixing-chamber and sample thermometers, and the heater's setpoint and range, capped."""

    def __init__(
        self,
        adapter: ThermometryAdapter,
        limits: ThermometryLimits,
        mixing_chamber: int,
        sample: int,
        pid: tuple[float, float, float] | None = None,
    ) -> None:
        self.adapter, self.limits = adapter, limits
        self.mixing_chamber, self.sample, self.pid = mixing_chamber, sample, pid

    def temperature_mc(self) -> float:
        return self.adapter.temperature(self.mixing_chamber)

    def temperature_sample(self) -> float:
        return self.adapter.temperature(self.sample)

    def set_setpoint(self, kelvin: float) -> None:
        """Regulate the mixing chamber at ``kelvin`` [K] with the controller's PID."""
        if not (math.isfinite(kelvin) and 0 <= kelvin <= self.limits.max_temperature):
            raise LimitError(
                f"temperature setpoint {kelvin!r} K is above the limit {self.limits.max_temperature} K"
            )
        self.adapter.set_setpoint(kelvin)
        self.adapter.set_closed_loop(self.mixing_chamber, self.pid)

    def set_heater_range(self, amps: float) -> None:
        """Heater full-scale current [A]: one of the adapter's ranges, at most the cap."""
        if not math.isfinite(amps):
            raise LimitError(f"heater range {amps!r} A is not a current")
        matches = [r for r in self.adapter.heater_ranges if abs(amps - r) <= 1e-3 * max(amps, 1e-9)]
        if not matches:
            ranges = ", ".join(f"{r:g}" for r in self.adapter.heater_ranges)
            raise LimitError(f"heater range {amps:g} A is not one of the controller's: {ranges} A")
        if matches[0] > self.limits.max_heater_range * (1 + 1e-9):  # the range that would be set
            raise LimitError(
                f"heater range {matches[0]:g} A is above the cap {self.limits.max_heater_range:g} A"
            )
        self.adapter.set_heater_range(matches[0])

    def heater_off(self) -> None:
        self.adapter.set_heater_range(0.0)


@dataclass(frozen=True)
class RfLimits:
    """RF safety: highest power [dBm] at the source's output."""

    max_power: float


class RfRole:
    """The RF source, with its power capped."""

    def __init__(self, adapter: RfSourceAdapter, limits: RfLimits) -> None:
        self.adapter, self.limits = adapter, limits

    def set_power(self, dbm: float) -> None:
        # RF sources set the power to 0.01 dB: the value that would be set must be under the cap too
        if not (math.isfinite(dbm) and max(dbm, round(dbm, 2)) <= self.limits.max_power):
            raise LimitError(f"RF power {dbm!r} dBm is above the cap {self.limits.max_power} dBm")
        self.adapter.set_power(dbm)

    def set_frequency(self, hertz: float) -> None:
        self.adapter.set_frequency(hertz)

    def set_output(self, on: bool) -> None:
        if on and self.adapter.power() > self.limits.max_power:
            self.set_power(self.limits.max_power)  # never switch on above the cap
        self.adapter.set_output(on)

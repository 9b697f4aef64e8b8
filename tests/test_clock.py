"""Clocks and the driver-time shim."""

import time

import pytest

from qbs_lab.clock import RealClock, VirtualClock, patch_driver_time


def _no_real_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s of real time")


def test_virtual_clock_moves_only_when_waited_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", _no_real_sleep)  # a virtual 8 h must not sleep for real
    clock = VirtualClock(io_latency=0.001)
    clock.sleep(8 * 3600)
    clock.tick()
    assert clock.now() == 8 * 3600 + 0.001


def test_real_clock_sleeps_for_real() -> None:
    clock = RealClock()
    clock.sleep(0.05)
    assert clock.now() >= 0.045  # it slept (how much longer a loaded machine takes is not asserted)


def test_patched_driver_module_sleeps_on_the_virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import qcodes.instrument_drivers.american_magnetics.AMI430_visa as ami

    clock = VirtualClock()
    with patch_driver_time(clock):
        monkeypatch.setattr(time, "sleep", _no_real_sleep)  # the driver's 600 s must not be real
        ami.time.sleep(600.0)
        monkeypatch.undo()
        assert clock.now() == 600.0
        assert ami.time.monotonic() == 600.0
        assert time.sleep is not ami.time.sleep  # the rest of the process keeps real time
    assert ami.time is time


def test_names_imported_from_time_are_patched_too() -> None:
    import pymeasure.instruments.ami.ami430 as pm_ami
    import qcodes.parameters.parameter_base as pb

    clock = VirtualClock()
    with patch_driver_time(clock):
        pm_ami.sleep(100.0)  # `from time import sleep` in PyMeasure's AMI 430 driver
        pb.time.sleep(50.0)  # QCoDeS Parameter post_delay / inter_delay
        assert clock.now() == 150.0
        assert pm_ami.time() > 1e9  # wall-clock epoch seconds, advancing with the virtual clock
    assert pm_ami.sleep is time.sleep and pb.time is time


def test_one_virtual_clock_at_a_time_and_real_time_restored() -> None:
    import pytest
    import qcodes.parameters.parameter_base as pb

    from qbs_lab.clock import ClockInUseError

    clock, other = VirtualClock(), VirtualClock()
    outer = patch_driver_time(clock)
    outer.__enter__()
    with patch_driver_time(clock):  # the same clock may nest (e.g. two labs sharing one clock)
        pb.time.sleep(10.0)
    assert pb.time is not time  # still patched: the outer block is open
    with pytest.raises(ClockInUseError), patch_driver_time(other):
        pass
    outer.__exit__(None, None, None)
    assert (clock.now(), other.now()) == (10.0, 0.0)
    assert pb.time is time


def test_sim_speed_from_the_environment_paces_only_when_set(monkeypatch):
    from qbs_lab.clock import SPEED_ENV, VirtualClock

    for text, speed in (("", None), ("100", 100.0), ("0", None), ("-3", None), ("fast", None)):
        monkeypatch.setenv(SPEED_ENV, text)
        assert VirtualClock.from_env().speed == speed
    monkeypatch.delenv(SPEED_ENV)
    clock = VirtualClock.from_env()
    assert clock.speed is None
    clock.sleep(3600.0)  # unpaced: an hour of virtual time is only a number
    assert clock.now() == 3600.0
    monkeypatch.setenv(SPEED_ENV, "1e9")
    paced = VirtualClock.from_env()
    paced.sleep(50.0)  # paced (50 ns of wall time here): the virtual time is the same
    assert paced.now() == 50.0

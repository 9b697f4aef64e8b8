"""Clocks and the driver-time shim."""

import time

from qbs_lab.clock import RealClock, VirtualClock, patch_driver_time


def test_virtual_clock_moves_only_when_waited_on() -> None:
    clock = VirtualClock(io_latency=0.001)
    t0 = time.monotonic()
    clock.sleep(8 * 3600)
    clock.tick()
    assert clock.now() == 8 * 3600 + 0.001
    assert time.monotonic() - t0 < 0.1


def test_real_clock_sleeps_for_real() -> None:
    clock = RealClock()
    clock.sleep(0.05)
    assert 0.045 < clock.now() < 1.0


def test_patched_driver_module_sleeps_on_the_virtual_clock() -> None:
    import qcodes.instrument_drivers.american_magnetics.AMI430_visa as ami

    clock = VirtualClock()
    with patch_driver_time(clock):
        t0 = time.monotonic()
        ami.time.sleep(600.0)
        assert clock.now() == 600.0
        assert ami.time.monotonic() == 600.0
        assert time.monotonic() - t0 < 0.1
        assert time.sleep is not ami.time.sleep  # the rest of the process keeps real time
    assert ami.time is time

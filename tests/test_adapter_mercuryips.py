"""The Mercury iPS magnet adapter against QCoDeS's pyvisa-sim file MercuryiPS.yaml.

pyvisa-sim keeps what a SET wrote and gives it back to the matching READ (FSET, RFST, ACTN), but
nothing moves: the field (``SIG:FLD``) stays at its default 0 whatever the target and the ramp
status, so a ramp never ends by itself. What that leaves untestable here: that the field reaches
the target at the set rate, that ``ACTN`` returns to ``HOLD`` at the end of a ramp, and a quench
(which this driver does not expose at all). What is tested: every adapter method runs and returns
SI values of the right type, each command is the one the Mercury iPS expects (recorded at the VISA
handle) and is taken by the instrument (read back), and only the bound axis moves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qbs_lab.drivers.adapters import adapter_for
from qbs_lab.drivers.adapters.qcodes_mercuryips import QcodesMercuryiPS
from qbs_lab.drivers.errors import LimitError
from qbs_lab.drivers.protocols import MagnetAdapter, MagnetStatus
from qbs_lab.drivers.roles import MagnetLimits, MagnetRole
from qcodes.instrument_drivers.oxford import OxfordMercuryiPS


class _Recorder:
    """Records every message the driver sends through its VISA handle, in order."""

    def __init__(self, driver: OxfordMercuryiPS) -> None:
        self.sent: list[str] = []
        handle = driver.visa_handle
        query = handle.query

        def recording_query(message: str, *args: object, **kwargs: object) -> str:
            self.sent.append(message)
            return query(message, *args, **kwargs)

        handle.query = recording_query  # type: ignore[method-assign]


@pytest.fixture
def ips() -> Iterator[tuple[OxfordMercuryiPS, _Recorder]]:
    driver = OxfordMercuryiPS("mercury_ips", "GPIB::1::INSTR", pyvisa_sim_file="MercuryiPS.yaml")
    try:
        yield driver, _Recorder(driver)
    finally:
        driver.close()


def _sets(recorder: _Recorder) -> list[str]:
    return [m for m in recorder.sent if m.startswith("SET:")]


def test_registry_names_this_adapter_and_it_meets_the_protocol(ips: tuple) -> None:
    driver, _ = ips
    role, cls = adapter_for("qcodes.instrument_drivers.oxford.OxfordMercuryiPS")  # type: ignore[misc]
    assert (role, cls) == ("magnet", QcodesMercuryiPS)
    assert isinstance(QcodesMercuryiPS(driver), MagnetAdapter)


def test_readings_are_floats_in_tesla_and_an_enum_status(ips: tuple) -> None:
    driver, recorder = ips
    magnet = QcodesMercuryiPS(driver)
    field, rate, status = magnet.field(), magnet.ramp_rate(), magnet.status()
    assert type(field) is float and field == 0.0
    assert type(rate) is float and rate == 0.0
    assert status is MagnetStatus.HOLDING
    assert recorder.sent == [
        "READ:DEV:GRPZ:PSU:SIG:FLD",
        "READ:DEV:GRPZ:PSU:SIG:RFST",
        "READ:DEV:GRPZ:PSU:ACTN",
    ]


def test_ramp_rate_goes_to_the_bound_axis_in_tesla_per_minute(ips: tuple) -> None:
    driver, recorder = ips
    magnet = QcodesMercuryiPS(driver)
    magnet.set_ramp_rate(0.002)  # T/s
    assert _sets(recorder) == ["SET:DEV:GRPZ:PSU:SIG:RFST:0.12"]  # the instrument's unit: T/min
    assert magnet.ramp_rate() == pytest.approx(0.002)  # read back from the instrument
    assert driver.GRPX.field_ramp_rate() == 0.0 and driver.GRPY.field_ramp_rate() == 0.0


def test_start_ramp_sets_the_target_and_starts_only_that_axis(ips: tuple) -> None:
    driver, recorder = ips
    magnet = QcodesMercuryiPS(driver)
    magnet.start_ramp(0.25)
    sets = _sets(recorder)
    assert "SET:DEV:GRPZ:PSU:SIG:FSET:0.25" in sets
    assert sets[-1] == "SET:DEV:GRPZ:PSU:ACTN:RTOS"  # started last, after the target
    assert not [m for m in sets if "ACTN" in m and "GRPZ" not in m]  # x and y are not started
    assert driver.GRPZ.field_target() == pytest.approx(0.25)
    assert driver.GRPX.field_target() == 0.0 and driver.GRPY.field_target() == 0.0
    assert driver.z_target() == pytest.approx(0.25)  # the driver's own target cache agrees
    assert magnet.status() is MagnetStatus.RAMPING
    assert driver.GRPX.ramp_status() == "HOLD" and driver.GRPY.ramp_status() == "HOLD"
    magnet.pause()
    assert _sets(recorder)[-1] == "SET:DEV:GRPZ:PSU:ACTN:HOLD"
    assert magnet.status() is MagnetStatus.HOLDING


def test_another_axis_can_be_bound(ips: tuple) -> None:
    driver, recorder = ips
    magnet = QcodesMercuryiPS(driver, axis="x")
    magnet.set_ramp_rate(0.001)
    magnet.start_ramp(-0.1)
    assert "SET:DEV:GRPX:PSU:SIG:RFST:0.06" in _sets(recorder)
    assert driver.GRPX.field_target() == pytest.approx(-0.1) and driver.GRPZ.field_target() == 0.0
    assert magnet.status() is MagnetStatus.RAMPING and driver.GRPZ.ramp_status() == "HOLD"
    with pytest.raises(ValueError, match="axes x, y and z"):
        QcodesMercuryiPS(driver, axis="r")


def test_a_clamped_supply_reads_paused_and_is_released_to_ramp(ips: tuple) -> None:
    driver, recorder = ips
    magnet = QcodesMercuryiPS(driver)
    driver.GRPZ.ramp_status("CLAMP")
    assert magnet.status() is MagnetStatus.PAUSED  # the role stops on it rather than wait
    magnet.start_ramp(0.1)
    assert _sets(recorder)[-2:] == ["SET:DEV:GRPZ:PSU:ACTN:HOLD", "SET:DEV:GRPZ:PSU:ACTN:RTOS"]
    assert magnet.status() is MagnetStatus.RAMPING


def test_the_drivers_own_field_limits_stay_in_force(ips: tuple) -> None:
    driver, recorder = ips
    driver.set_new_field_limits(lambda x, y, z: abs(z) <= 0.5)
    magnet = QcodesMercuryiPS(driver)
    with pytest.raises(ValueError, match="field_limits"):
        magnet.start_ramp(0.8)
    assert _sets(recorder) == []


class _RampEndsClock:
    """A clock whose wait finishes the ramp (pyvisa-sim's field never moves): ACTN back to HOLD."""

    def __init__(self, driver: OxfordMercuryiPS) -> None:
        self.driver, self.t = driver, 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.driver.GRPZ.ramp_status("HOLD")


def test_magnet_role_sets_the_rate_on_the_supply_and_refuses_before_sending(ips: tuple) -> None:
    driver, recorder = ips
    role = MagnetRole(
        QcodesMercuryiPS(driver),
        MagnetLimits(max_field=1.0, max_rate=0.002, poll=1.0),
        _RampEndsClock(driver),
    )
    with pytest.raises(LimitError):
        role.ramp_to(1.5)
    with pytest.raises(LimitError):
        role.ramp_to(0.5, rate=0.01)
    assert _sets(recorder) == []  # nothing reached the supply
    role.ramp_to(0.5, rate=0.001)
    sets = _sets(recorder)
    rate_at = sets.index("SET:DEV:GRPZ:PSU:SIG:RFST:0.06")  # 0.001 T/s, on the instrument
    assert rate_at < sets.index("SET:DEV:GRPZ:PSU:ACTN:RTOS")  # before the ramp starts
    assert driver.GRPZ.field_target() == pytest.approx(0.5)
    assert role.status() is MagnetStatus.HOLDING

"""Transport behaviour a driver relies on: message END, -410 on an unread reply, binary blocks."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import pyvisa
from conftest import STATION, Connection
from qcodes.instrument_drivers.stanford_research import SR830

from qbs_lab.sim import SimLab


def test_a_read_without_termination_ends_at_the_message_end(lab: SimLab) -> None:
    rm = pyvisa.ResourceManager(lab.visalib)
    lockin = rm.open_resource(lab.address("lockin"))  # no read termination: GPIB's EOI ends a read
    lockin.read_termination = None
    lockin.write("OUTX?;OUTX?")  # two answers in one response message
    assert lockin.read_raw() == b"1\n1\n"
    lockin.close()


def test_an_unread_reply_is_discarded_with_query_interrupted(lab: SimLab) -> None:
    rm = pyvisa.ResourceManager(lab.visalib)
    rf = rm.open_resource(lab.address("rf"), read_termination="\n", write_termination="\n")
    rf.write("*TST?")  # reply never read (as the QCoDeS SGS100A driver's run_self_tests does)
    assert rf.query("*IDN?").startswith("Rohde&Schwarz,SGS100A")
    assert rf.query("SYST:ERR?") == '-410,"Query INTERRUPTED"'
    rf.close()


def test_qcodes_sr830_reads_its_binary_buffer(conn: Connection) -> None:
    lockin = SR830("lockin_buffer", **conn.kwargs("lockin"))
    lockin.ch1_display("X")
    lockin.buffer_SR(64)
    lockin.buffer_acq_mode("single shot")
    lockin.buffer_trig_mode("OFF")
    lockin.buffer_reset()
    lockin.buffer_start()
    assert lockin.buffer_npts() <= 1  # a query: over TCP the writes land before the clock jumps
    conn.lab.clock.sleep(2.0)
    lockin.buffer_pause()
    x_now = lockin.X()
    data = np.asarray(lockin.ch1_datatrace.get())
    assert 120 <= len(data) <= 130  # 2 s at 64 Hz
    noise = conn.lab.state.lockin.noise_rms()
    assert np.mean(data) == pytest.approx(x_now, abs=5 * noise)
    assert np.std(data) < 5 * noise


def test_closing_the_lab_cuts_open_tcp_connections() -> None:
    before = threading.active_count()
    lab = SimLab.from_station(STATION)
    rm = pyvisa.ResourceManager("@py")
    fridge = rm.open_resource(lab.serve_tcp()["fridge"], read_termination="\r\n", timeout=500)
    lockin = rm.open_resource(lab.tcp_address("lockin", "hislip"), timeout=500)
    assert "372" in fridge.query("*IDN?") and "SR830" in lockin.query("*IDN?")
    lab.close()
    with pytest.raises((pyvisa.errors.VisaIOError, OSError)):
        fridge.query("KRDG? 6")  # nobody answers for a closed lab
    fridge.close()
    lockin.close()
    deadline = time.monotonic() + 2.0
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before  # no server or handler thread outlives the lab

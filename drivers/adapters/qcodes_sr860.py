"""The QCoDeS SR860 driver as a lock-in role adapter."""

from __future__ import annotations

from qbs_lab.drivers.adapters.qcodes_sr830 import QcodesSR830

__all__ = ["QcodesSR860"]


class QcodesSR860(QcodesSR830):
    """Binds ``qcodes.instrument_drivers.stanford_research.SR860`` on its voltage input.

    QCoDeS gives the SR86x the SR830's parameter names (time_constant, filter_slope, sensitivity,
    amplitude, frequency) and the same ``LIAS?`` layout (bit 0 input overload, 2 output overload,
    3 reference unlock), so only the reading differs: ``SNAP? 0,1`` through ``get_values``.
    """

    def read_xy(self) -> tuple[float, float]:
        x, y = self.driver.get_values("X", "Y")  # SNAP? 0,1: one instant
        return float(x), float(y)

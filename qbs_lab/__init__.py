"""qbs_lab: instrument control and acquisition for quantum-breakdown-of-superconductivity experiments."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qbs_lab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

"""qbs_lab: instrument control and acquisition for quantum-breakdown-of-superconductivity experiments.

Running procedures from Python (see :mod:`qbs_lab.api`)::

    import qbs_lab
    run = qbs_lab.run("field_isotherms", sim=True, V_g=15, temperatures=[0.06, 0.12, 0.24])
    run.dataset["R"]

Everything here is imported on first use, so ``import qbs_lab`` (and ``qbs-lab --help``) stays light.
"""

from __future__ import annotations

import warnings
from typing import Any

# QCoDeS's SR830 driver warns about its own buffer parameters whenever one is made: nothing a user of
# the driver can act on (a QCoDeS matter), so not shown to scripts that use it through or beside us
warnings.filterwarnings("ignore", message=r"Parameter ch\d_databuffer .*does not correctly pass kwargs")

__all__ = ["Run", "__version__", "estimate", "list_runs", "open_run", "resume", "run"]

# (the catalog query is list_runs: qbs_lab.runs is the module that runs procedures)
_API = ("Run", "RunEstimate", "estimate", "list_runs", "open_run", "resume", "run")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qbs_lab")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _version()
    elif name in _API:
        from qbs_lab import api

        value = getattr(api, name)
    else:
        raise AttributeError(f"module 'qbs_lab' has no attribute {name!r}")
    globals()[name] = value
    return value

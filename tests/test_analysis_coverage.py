"""The analysis on isotherm sets it did not make: honest error bars, z*nu, heated isotherms, verdicts.

The sets come from tests/isotherm_sets.py (not the simulator): three scaling-function families (ln R
polynomial, tanh, logistic saturating), z*nu 0.6-2.4, multiplicative noise 0.2 %, 1 % and 3 %, 3 to 16
isotherms between 50 mK and 1 K, each on its own grid (uniform, non-uniform, dense 1,000-1,600 points,
sparse 15 points), 0-5 % of the points missing, and in some sets the two lowest isotherms heated (their
electrons saturate at 150 mK). Everything goes through :func:`analyze_isotherms`, the code path of the
online update and of ``qbs-lab analyze crossing``.
"""

from __future__ import annotations

import numpy as np
import pytest
from isotherm_sets import FAMILIES, GRIDS, SetSpec, make_set

from qbs_lab.analysis.estimate import analyze_isotherms

SETS_PER_NOISE = 20


def _spec(noise: float, i: int, rng: np.random.Generator) -> SetSpec:
    n_iso = int(rng.integers(3, 17))
    return SetSpec(
        family=FAMILIES[i % 3],
        znu=float(rng.uniform(0.6, 2.4)),
        noise=noise,
        n_iso=n_iso,
        grid=GRIDS[(i // 3) % 4],
        missing=float(rng.uniform(0.0, 0.05)),
        heated=bool(n_iso >= 6 and rng.uniform() < 0.4),
    )


@pytest.mark.parametrize("noise", [0.002, 0.01, 0.03])
def test_x_c_within_two_sigma_znu_within_ten_percent_heated_isotherms_excluded(noise: float) -> None:
    rng = np.random.default_rng(int(noise * 1e4))
    covered, znu_ok, heated_ok, single, widths = [], [], [], [], []
    for i in range(SETS_PER_NOISE):
        spec = _spec(noise, i, rng)
        data, truth = make_set(spec, seed=1000 * i + int(noise * 1e4))
        a = analyze_isotherms(data, n_boot=100, seed=i)
        c, k = a.crossing, a.collapse
        assert np.isfinite(c.x_c) and c.x_c_err > 0, spec
        covered.append(abs(c.x_c - truth["B_c"]) <= 2 * c.x_c_err)
        widths.append(c.x_c_err / truth["B_c"])
        znu_ok.append(k is not None and k.ok and abs(k.znu / spec.znu - 1) <= 0.1)
        heated_ok.append(sorted(T for T, _ in a.excluded) == truth["heated"])
        single.append(c.verdict == "single crossing")
        if spec.heated:
            assert all("heated" in reason for T, reason in a.excluded if T in truth["heated"])
        d = a.to_dict()
        assert [e["T"] for e in d["excluded"]] == [T for T, _ in a.excluded]
    assert np.mean(covered) >= 0.9, f"x_c within 2 sigma in {np.mean(covered):.0%}"
    assert np.mean(znu_ok) >= 0.9, f"z*nu within 10 % in {np.mean(znu_ok):.0%}"
    assert np.mean(heated_ok) >= 0.9, f"heated isotherms (and only they) excluded in {np.mean(heated_ok):.0%}"
    assert np.mean(single) >= 0.9
    # honest, not uselessly wide: the error stays well under the noise's own scale of the range
    assert np.median(widths) < 0.02 * max(noise / 0.01, 0.2)


@pytest.mark.parametrize("offset", [+0.12, -0.12])
@pytest.mark.parametrize("family", FAMILIES)
def test_sets_that_do_not_cross_are_no_crossing_with_their_order(offset: float, family: str) -> None:
    for seed in range(1):
        spec = SetSpec(family=family, noise=0.01, n_iso=6, offset=offset)
        data, _ = make_set(spec, seed)
        a = analyze_isotherms(data, n_boot=50, seed=seed)
        d = a.to_dict()
        assert d["verdict"] == "no crossing in range"
        assert d["x_c"] is None and d["R_c"] is None and d["crossings"] == []
        # above B_c (u > 0) R is higher at lower T: it rises on cooling; below B_c it falls
        expected = "rises on cooling" if offset > 0 else "falls on cooling"
        assert expected in d["order"]
        assert any(line.startswith("order: R " + expected.split()[0]) for line in a.lines())


@pytest.mark.parametrize("seed", range(4))
def test_drifting_sets_are_drifting_with_the_drift_and_its_error(seed: int) -> None:
    spec = SetSpec(family=("tanh", "logistic")[seed % 2], noise=0.01, n_iso=8, grid="nonuniform", drift=0.05)
    data, truth = make_set(spec, seed)
    a = analyze_isotherms(data, n_boot=100, seed=seed)
    c = a.crossing
    assert c.verdict == "drifting crossing"
    assert abs(c.drift) > 3 * c.drift_err > 0
    assert abs(c.drift - truth["drift"]) < 0.35 * truth["drift"]  # T per K
    assert "drift of the crossings" in "\n".join(a.lines())


def test_clean_sets_are_not_called_drifting() -> None:
    for seed in range(4):
        spec = SetSpec(family=FAMILIES[seed % 3], noise=0.01, n_iso=8, grid="nonuniform")
        data, _ = make_set(spec, seed)
        assert analyze_isotherms(data, n_boot=100, seed=seed).crossing.verdict == "single crossing"

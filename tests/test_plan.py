"""Plans (pure, no instrument): run order with snake axes, axis and plan validation, temperature
policy zones, the limit check against the reference station, and procedure parameters from --set."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from conftest import STATION
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qbs_lab.actuators import check_plan
from qbs_lab.plan import Axis, FieldPolicy, Plan, TemperaturePolicy, linspace
from qbs_lab.procedure import ProcedureError, list_procedures, load_procedure, parse_settings
from qbs_lab.station import load_station

CONFIG = load_station(STATION)
KINDS = ("T", "V_g", "B", "P_rf", "I_exc")


def grid_plan(shape: tuple[int, ...], snake: tuple[bool, ...] | bool = False) -> Plan:
    """A plan over ``shape`` (outermost first) on the built-in axis kinds, values 0, 1, 2, ..."""
    snakes = (snake,) * len(shape) if isinstance(snake, bool) else snake
    axes = tuple(
        Axis(KINDS[k], tuple(float(i) for i in range(n)), snake=s)
        for k, (n, s) in enumerate(zip(shape, snakes, strict=True))
    )
    return Plan("test", axes=axes)


# -- run order -----------------------------------------------------------------------------------
def test_order_without_snake_is_c_order() -> None:
    order = grid_plan((2, 3, 4)).order()
    assert order.shape == (24, 3)
    assert [tuple(r) for r in order.tolist()] == list(itertools.product(range(2), range(3), range(4)))


def test_snake_reverses_the_inner_axis_on_odd_outer_lines() -> None:
    plan = grid_plan((3, 4), snake=(False, True))
    expected = [(0, j) for j in range(4)] + [(1, j) for j in (3, 2, 1, 0)] + [(2, j) for j in range(4)]
    assert [tuple(r) for r in plan.order().tolist()] == expected
    # the coordinates follow: at the turn, B stays where it was (no ramp back across the range)
    coords = list(
        Plan(
            "t", axes=(Axis("T", (0.05, 0.1)), Axis("B", linspace(0, 0.02, 3), snake=True))
        ).coordinates_in_order()
    )
    assert coords == [(0.05, 0.0), (0.05, 0.01), (0.05, 0.02), (0.1, 0.02), (0.1, 0.01), (0.1, 0.0)]


def test_snake_on_the_outermost_axis_changes_nothing() -> None:
    """The outermost axis has no outer line to alternate with: it always runs as given."""
    a = grid_plan((3, 2), snake=(True, False)).order()
    b = grid_plan((3, 2)).order()
    assert np.array_equal(a, b)


SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@settings(max_examples=200, deadline=None)
@given(shape=SHAPES, data=st.data())
@example(shape=(2, 2, 2), data=None)
@example(shape=(2, 2, 3), data=None)
def test_every_grid_index_appears_exactly_once(shape: tuple[int, ...], data: st.DataObject | None) -> None:
    snake = (
        tuple(data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))) if data else True
    )
    order = grid_plan(shape, snake).order()
    assert order.shape == (math.prod(shape), len(shape))
    flat = np.ravel_multi_index(tuple(order.T), shape)
    assert sorted(flat.tolist()) == list(range(math.prod(shape)))


@settings(max_examples=200, deadline=None)
@given(shape=SHAPES)
@example(shape=(2, 2, 2))  # an even middle axis: the smallest grid where a 3-D snake can go wrong
@example(shape=(3, 4, 5))
@example(shape=(2, 3, 5))
def test_snake_on_every_inner_axis_moves_one_step_in_one_axis_at_a_time(shape: tuple[int, ...]) -> None:
    """With every inner axis snake, the run is a path through the grid that moves one step along one
    axis between consecutive points: at a line turn the outer axis steps and every inner axis stays
    where it was, so no axis ever jumps back across its range."""
    order = grid_plan(shape, snake=(False,) + (True,) * (len(shape) - 1)).order()
    steps = np.diff(order, axis=0)
    bad = [
        (k, tuple(order[k].tolist()), tuple(order[k + 1].tolist()))
        for k, d in enumerate(steps)
        if not (np.count_nonzero(d) == 1 and np.abs(d).sum() == 1)
    ]
    assert not bad, f"grid {shape}: consecutive points that move more than one step: {bad[:3]}"


@settings(max_examples=200, deadline=None)
@given(shape=SHAPES, data=st.data())
@example(shape=(2, 2, 2), data=None)
def test_a_snake_axis_stays_put_whenever_an_outer_axis_steps(
    shape: tuple[int, ...], data: st.DataObject | None
) -> None:
    """Any mix of snake flags: wherever an axis outside a snake axis changes, the snake axis keeps its
    index (it turns round instead of ramping back); within a line it moves by exactly one step."""
    if data is None:
        snake = (False, True, True)
    else:
        snake = tuple(data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape))))
    order = grid_plan(shape, snake).order()
    for a, b in itertools.pairwise(order.tolist()):
        for k in range(1, len(shape)):
            if not snake[k]:
                continue
            if a[:k] != b[:k]:
                assert a[k] == b[k], f"grid {shape}, snake {snake}: axis {k} jumps at {a} -> {b}"
            else:
                assert abs(a[k] - b[k]) <= 1, f"grid {shape}: axis {k} skips at {a} -> {b}"


# -- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "values", "match"),
    [
        ("V_g", (1.0, 2.0, 1.0), "repeats a value"),
        ("B", (0.0, math.nan), "not a finite number"),
        ("T", (0.1, math.inf), "not a finite number"),
        ("V_g", (-math.inf,), "not a finite number"),
        ("V_g", (), "has no values"),
        ("flux", (1.0, 2.0), "no setter"),
    ],
)
def test_bad_axes_are_refused(name: str, values: tuple[float, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Axis(name, values)


def test_axis_kinds_get_si_units_and_custom_axes_need_a_setter() -> None:
    seen: list[float] = []
    custom = Axis("flux", (0.1, 0.2), setter=seen.append, units="Wb", long_name="flux")
    assert custom.values == (0.1, 0.2) and custom.units == "Wb"
    assert [(a.units, a.long_name) for a in (Axis("V_g", (1,)), Axis("B", (0,)), Axis("T", (0.1,)))] == [
        ("V", "gate voltage"),
        ("T", "magnetic field"),
        ("K", "temperature setpoint"),
    ]
    assert Axis("V_g", np.array([1, 2])).values == (1.0, 2.0)  # plain floats, whatever came in
    assert all(type(v) is float for v in Axis("V_g", np.array([1, 2])).values)


def test_bad_plans_are_refused() -> None:
    v = Axis("V_g", (0.0, 1.0))
    with pytest.raises(ValueError, match="both swept and fixed"):
        Plan("p", axes=(v,), fixed={"V_g": 1.0})
    with pytest.raises(ValueError, match="appears twice"):
        Plan("p", axes=(v, Axis("V_g", (2.0, 3.0))))
    with pytest.raises(ValueError, match="fixed setpoint 'flux'"):
        Plan("p", axes=(v,), fixed={"flux": 1.0})
    with pytest.raises(ValueError, match="at least one axis"):
        Plan("p", axes=())
    with pytest.raises(ValueError, match="on_timeout"):
        Plan("p", axes=(v,), temperature_policy=TemperaturePolicy(on_timeout="ignore"))
    plan = Plan("p", axes=(Axis("T", (0.1, 0.2)), v), fixed={"B": 0.01})
    assert (plan.shape, plan.dims, plan.size) == ((2, 2), ("T", "V_g"), 4)
    assert plan.setpoints() == {"T": (0.1, 0.2), "V_g": (0.0, 1.0), "B": (0.01,)}


# -- temperature policy ----------------------------------------------------------------------------
def test_temperature_band_is_a_fraction_of_the_setpoint_with_a_floor() -> None:
    p = TemperaturePolicy(tolerance=0.02, min_tolerance=0.5e-3)
    assert p.band(0.1) == pytest.approx(2e-3)
    assert p.band(0.5) == pytest.approx(10e-3)
    assert p.band(0.01) == pytest.approx(0.5e-3)  # 2 % of 10 mK is 0.2 mK: the floor wins
    assert p.band(0.025) == pytest.approx(0.5e-3)  # exactly at the crossover


@pytest.mark.parametrize(
    ("setpoint", "amps"),
    [
        (0.02, 316e-6),
        (0.1, 316e-6),  # a zone's top belongs to it
        (0.1001, 1e-3),
        (0.35, 1e-3),
        (0.5, 3.16e-3),
        (0.7, 3.16e-3),
        (1.2, 10e-3),
        (3.0, 10e-3),  # beyond the table: the last zone's range
    ],
)
def test_heater_range_follows_the_zone_table(setpoint: float, amps: float) -> None:
    assert TemperaturePolicy().heater_range(setpoint) == amps


# -- limits -----------------------------------------------------------------------------------------
def test_the_reference_station_limits_are_the_ones_these_tests_assume() -> None:
    assert (CONFIG.gate.min, CONFIG.gate.max) == (-40.0, 40.0)
    assert (CONFIG.magnet.max_field, CONFIG.magnet.max_rate) == (0.1, 0.002)
    assert CONFIG.thermometry.max_temperature == 1.5
    assert CONFIG.rf is not None and CONFIG.rf.max_power == -10.0


def test_setpoints_at_the_limits_pass() -> None:
    plan = Plan(
        "edges",
        axes=(
            Axis("V_g", (-40.0, 0.0, 40.0)),
            Axis("B", (-0.1, 0.1)),
            Axis("T", (0.015, 1.5)),
            Axis("P_rf", (-40.0, -10.0)),
        ),
        field_policy=FieldPolicy(rate=0.002),
    )
    assert check_plan(plan, CONFIG) == []


@pytest.mark.parametrize(
    ("plan", "axis", "value"),
    [
        (Plan("p", axes=(Axis("V_g", (0.0, 20.0, 40.5)),)), "V_g", "40.5"),
        (Plan("p", axes=(Axis("V_g", (-41.0, 0.0)),)), "V_g", "-41"),
        (Plan("p", axes=(Axis("T", (0.1,)),), fixed={"V_g": 45.0}), "V_g", "45"),
        (Plan("p", axes=(Axis("B", (0.0, 0.05, 0.11)),)), "B", "0.11"),
        (Plan("p", axes=(Axis("B", (-0.1001, 0.0)),)), "B", "-0.1001"),
        (Plan("p", axes=(Axis("B", (0.0, 0.01)),), field_policy=FieldPolicy(rate=0.003)), "B", "0"),
        (Plan("p", axes=(Axis("T", (0.1, 1.6)),)), "T", "1.6"),
        (Plan("p", axes=(Axis("V_g", (0.0,)),), fixed={"T": 2.0}), "T", "2"),
        (Plan("p", axes=(Axis("T", (0.0, 0.1)),)), "T", "0"),
        (Plan("p", axes=(Axis("P_rf", (-30.0, -5.0)),)), "P_rf", "-5"),
        (Plan("p", axes=(Axis("V_g", (0.0,)),), fixed={"P_rf": 0.0}), "P_rf", "0"),
    ],
)
def test_setpoints_beyond_the_limits_are_found(plan: Plan, axis: str, value: str) -> None:
    problems = check_plan(plan, CONFIG)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{axis} = {value}:"), problems
    assert "\n" not in problems[0]


def test_a_field_ramp_rate_above_the_limit_is_named() -> None:
    plan = Plan("p", axes=(Axis("B", (0.0, 0.01)),), field_policy=FieldPolicy(rate=0.003))
    (problem,) = check_plan(plan, CONFIG)
    assert "rate" in problem and "0.003" in problem and "0.002" in problem


def test_a_heater_zone_above_the_cap_is_found() -> None:
    policy = TemperaturePolicy(heater_zones=((0.1, 316e-6), (1.5, 31.6e-3)))
    plan = Plan("p", axes=(Axis("T", (0.05, 0.5)),), temperature_policy=policy)
    (problem,) = check_plan(plan, CONFIG)
    assert problem.startswith("T = 0.5:") and "heater range" in problem and "0.0316" in problem


def test_every_problem_is_reported_one_line_per_axis() -> None:
    plan = Plan(
        "p",
        axes=(Axis("V_g", (0.0, 50.0, 60.0)), Axis("B", (0.0, 0.2))),
        fixed={"T": 3.0, "P_rf": 5.0},
    )
    problems = check_plan(plan, CONFIG)
    assert [p.split(":")[0] for p in problems] == ["V_g = 50", "B = 0.2", "T = 3", "P_rf = 5"]


def test_the_built_in_procedures_defaults_are_within_the_limits() -> None:
    names = list_procedures()
    assert set(names) >= {
        "gate_sweep",
        "field_sweep",
        "temperature_sweep",
        "field_isotherms",
        "gate_isotherms",
        "phase_diagram",
    }
    for name in names:
        proc = load_procedure(name)
        plan = proc.plan(proc.parameters())
        assert plan.procedure == name
        assert check_plan(plan, CONFIG) == [], name


# -- procedure parameters from --set ------------------------------------------------------------------
def test_settings_are_parsed_by_each_fields_type() -> None:
    proc = load_procedure("field_isotherms")
    p = parse_settings(
        proc,
        ["V_g=12.5", "num=7", "snake=false", "temperatures=0.05,0.1, 0.2", "rate=0.001", "hold=30"],
    )
    assert p.V_g == 12.5 and isinstance(p.V_g, float)
    assert p.num == 7 and isinstance(p.num, int)
    assert p.snake is False
    assert p.temperatures == (0.05, 0.1, 0.2)
    assert p.rate == 0.001
    assert p.hold == 30.0
    # untouched fields keep their defaults
    assert (p.B_start, p.B_stop) == (0.006, 0.018)
    ranged = parse_settings(proc, ["temperatures=0.05:0.25:5", "rate=None", "snake=true"])
    assert ranged.temperatures == pytest.approx((0.05, 0.1, 0.15, 0.2, 0.25))
    assert len(ranged.temperatures) == 5 and ranged.rate is None and ranged.snake is True
    plan = proc.plan(ranged)
    assert plan.shape == (5, 25) and plan.axes[0].values == ranged.temperatures
    assert plan.parameters == dataclasses.asdict(ranged)


def test_optional_parameters_take_none() -> None:
    proc = load_procedure("gate_sweep")
    assert parse_settings(proc, ["T=none"]).T is None
    p = parse_settings(proc, ["T=0.1"])
    assert p.T == 0.1
    assert proc.plan(p).fixed == {"B": 0.0, "T": 0.1}
    assert proc.plan(parse_settings(proc, [])).fixed == {"B": 0.0}


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("bogus=1", "bogus"),
        ("num=abc", "num"),
        ("num=2.5", "num"),
        ("V_g=fifteen", "V_g"),
        ("V_g=", "V_g"),
        ("snake=maybe", "snake"),
        ("temperatures=a,b", "temperatures"),
        ("temperatures=0:1:x", "temperatures"),
        ("rate=fast", "rate"),
    ],
)
def test_a_bad_setting_gives_one_line_naming_the_key(setting: str, key: str) -> None:
    proc = load_procedure("field_isotherms")
    with pytest.raises(ProcedureError) as info:
        parse_settings(proc, [setting])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--set {key}"), message


def test_a_setting_without_equals_sign_is_refused() -> None:
    proc = load_procedure("field_isotherms")
    with pytest.raises(ProcedureError, match="expected key=value"):
        parse_settings(proc, ["num"])


def test_an_unknown_procedure_names_the_built_in_ones() -> None:
    with pytest.raises(ProcedureError, match=r"no procedure 'nope'.*field_isotherms"):
        load_procedure("nope")

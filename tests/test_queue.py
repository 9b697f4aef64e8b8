"""The queue: editing it, plan files, estimate, and a short run on the simulated lab."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from qbs_lab.cli import main
from qbs_lab.queue import Queue, QueueError
from qbs_lab.store import Catalog

STATION = Path(__file__).resolve().parents[1] / "station.yaml"


def test_add_move_remove_keep_positions_dense(tmp_path: Path) -> None:
    q = Queue(tmp_path)
    a = q.add("gate_sweep", ["num=5"])
    b = q.add("field_sweep", ["num=5"])
    c = q.add("temperature_sweep", ["temperatures=0.05,0.1"])
    assert [i.item_id for i in q.items()] == [a.item_id, b.item_id, c.item_id]
    q.move(c.item_id, 1)
    assert [i.item_id for i in q.items()] == [c.item_id, a.item_id, b.item_id]
    assert [i.position for i in q.items()] == [1, 2, 3]
    q.remove(a.item_id)
    assert [(i.item_id, i.position) for i in q.items()] == [(c.item_id, 1), (b.item_id, 2)]
    assert q.next_item() == q.get(c.item_id)
    with pytest.raises(QueueError, match="no item 99"):
        q.get(99)


def test_add_checks_the_procedure_and_its_settings(tmp_path: Path) -> None:
    q = Queue(tmp_path)
    with pytest.raises(QueueError, match="no procedure 'nope'"):
        q.add("nope")
    with pytest.raises(QueueError, match="--set num=x: expected a whole number"):
        q.add("gate_sweep", ["num=x"])
    assert q.items() == []


def test_plan_file_problems_are_reported_together_with_lines_and_nothing_is_added(tmp_path: Path) -> None:
    plan = tmp_path / "tonight.yaml"
    plan.write_text(
        "items:\n"
        "  - procedure: gate_sweep\n"
        "    set: {num: 5}\n"
        "  - procedure: nope\n"
        "  - procedure: field_sweep\n"
        "    set: {num: many}\n"
        "  - procedure: field_sweep\n"
        "    when: tonight\n"
    )
    q = Queue(tmp_path / "data")
    with pytest.raises(QueueError) as err:
        q.load(plan)
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith(f"{plan}:4: items[1]: no procedure 'nope'")
    assert problems[1].startswith(f"{plan}:5: items[2]: --set num=many")
    assert problems[2].startswith(f"{plan}:7: items[3]: unknown key(s) when")
    assert q.items() == []


def test_plan_file_values_become_settings(tmp_path: Path) -> None:
    plan = tmp_path / "tonight.yaml"
    plan.write_text(
        "items:\n  - procedure: field_isotherms\n"
        "    set: {temperatures: [0.06, 0.12], num: 5, snake: false}\n"
    )
    q = Queue(tmp_path / "data")
    (item,) = q.load(plan)
    assert item.settings == ["temperatures=0.06,0.12", "num=5", "snake=false"]


def test_queue_runs_items_in_order_and_a_second_run_finds_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    args = ["--data", data]
    assert main(["queue", "add", "field_sweep", "--set", "num=5", "--set", "T=0.1", *args]) == 0
    assert main(["queue", "add", "gate_sweep", "--set", "num=5", *args]) == 0
    assert main(["queue", "move", "2", "1", *args]) == 0
    capsys.readouterr()
    assert main(["queue", "estimate", "--station", str(STATION), *args]) == 0
    est = capsys.readouterr().out
    assert "gate_sweep" in est and "field_sweep" in est and "it would finish at" in est
    assert est.index("gate_sweep") < est.index("field_sweep")
    code = main(["queue", "run", "--sim", "--station", str(STATION), "--no-progress", *args])
    out = capsys.readouterr().out
    assert code == 0 and "queue done" in out
    items = Queue(data).items()
    assert [i.status for i in items] == ["done", "done"]
    runs = {r.run_id: r for r in Catalog(data).runs()}
    # run ids in queue order: gate_sweep was moved first, so it ran first
    assert [runs[i.run_id].procedure for i in items] == ["gate_sweep", "field_sweep"]
    assert int(items[0].run_id) < int(items[1].run_id)
    for i in items:
        ds = xr.open_zarr(runs[i.run_id].path)
        assert ds.attrs["status"] == "completed"
        assert np.isfinite(ds["R"].values).all()
    assert main(["queue", "run", "--sim", "--station", str(STATION), "--no-progress", *args]) == 0
    assert len(Catalog(data).runs()) == 2  # nothing ran again
    assert main(["queue", "clear", *args]) == 0
    assert Queue(data).items() == []


def test_faults_need_the_simulated_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faults = tmp_path / "f.yaml"
    faults.write_text("faults:\n  - {kind: quench, at_time: 10}\n")
    code = main(["run", "gate_sweep", "--faults", str(faults), "--data", str(tmp_path / "d")])
    assert code == 2
    assert "add --sim" in capsys.readouterr().err
    faults.write_text("faults:\n  - {kind: quake, at_time: 10}\n")
    code = main(["run", "gate_sweep", "--sim", "--faults", str(faults), "--data", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "quake" in err and "Traceback" not in err


BROKEN_LATER = '''"""A procedure that imports today and not tonight."""
from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    num: int = param(3, "", "gate voltages")


def plan(p: Parameters) -> Plan:
    return Plan("later", axes=(Axis("V_g", linspace(0.0, 1.0, p.num)),))
'''


def test_an_item_that_cannot_run_is_marked_failed_notified_and_the_queue_goes_on(tmp_path: Path) -> None:
    """An item outside the limits of the station it runs on, and one whose file no longer imports, are
    failed with the reason and notified; the good item after them runs."""
    station = tmp_path / "station.yaml"
    events = tmp_path / "events.txt"
    text = STATION.read_text().replace("    max: 40.0 ", "    max: 10.0 ", 1)
    assert text != STATION.read_text()
    text += f"\nnotify:\n  command: 'echo \"$QBS_EVENT|$QBS_ITEM|$QBS_MESSAGE\" >> {events}'\n"
    station.write_text(text)
    later = tmp_path / "later.py"
    later.write_text(BROKEN_LATER)
    data = tmp_path / "data"
    q = Queue(data)
    too_high = q.add("gate_sweep", ["num=5", "V_stop=20"])  # fine at the reference station, not here
    broken = q.add(str(later), ["num=3"])
    good = q.add("gate_sweep", ["num=4", "V_stop=5"])
    later.write_text(BROKEN_LATER + "\nthis line is not python\n")  # edited after it was queued
    code = main(["queue", "run", "--sim", "--station", str(station), "--data", str(data), "--no-progress"])
    assert code == 0
    items = {i.item_id: i for i in q.items()}
    assert items[too_high.item_id].status == "failed"
    assert "outside the station's limits" in (items[too_high.item_id].message or "")
    assert "V_g" in (items[too_high.item_id].message or "")
    assert items[broken.item_id].status == "failed"
    assert "cannot load (SyntaxError" in (items[broken.item_id].message or "")
    assert items[good.item_id].status == "done"
    runs = Catalog(data).runs()
    assert [r.procedure for r in runs] == ["gate_sweep"] and runs[0].state == "completed"
    lines = events.read_text().splitlines()
    failed = [line for line in lines if line.startswith("item_failed|")]
    assert (
        failed[0].startswith(f"item_failed|{too_high.item_id}|")
        and "outside the station's limits" in failed[0]
    )
    assert failed[1].startswith(f"item_failed|{broken.item_id}|") and "SyntaxError" in failed[1]
    assert f"item_done|{good.item_id}|" in "\n".join(lines) and lines[-1].startswith("queue_done|")

"""The live view's JSON API over HTTP, against a real `qbs-lab view` process reading a simulated run
that another process is writing (paced through the virtual clock so it can be watched)."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import numpy as np
import pytest

from tests.view_support import (
    free_port,
    get,
    http,
    listening_addresses,
    paced_run,
    qbs_lab,
    view_server,
)

NUM = 9  # fields per isotherm in paced_run


def test_api_follows_a_run_from_running_to_completed(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    with view_server(data, port):
        assert listening_addresses(port) == {"127.0.0.1"}  # loopback only, by default
        assert get(port, "/api/runs") == []  # no catalog yet: an empty list, not an error
        run = paced_run(data, speed=80)
        seen = []  # (status, points_done, estimated_left_s, online isotherms or None)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                runs = get(port, "/api/runs")
                if runs:
                    detail = get(port, f"/api/runs/{runs[0]['run_id']}")
                    online = detail["online"]
                    seen.append(
                        (
                            detail["status"],
                            detail["points_done"],
                            detail["estimated_left_s"],
                            online["isotherms"] if online else None,
                        )
                    )
                    if detail["status"] != "running" and run.poll() is not None:
                        break
                time.sleep(0.2)
            out = run.communicate(timeout=60)[0]
        finally:
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, out

        running = [s for s in seen if s[0] == "running"]
        assert len(running) >= 5, seen
        done_counts = [s[1] for s in running]
        assert done_counts == sorted(done_counts)  # points_done never goes back
        assert len(set(done_counts)) >= 3  # and it grows while we watch
        assert done_counts[0] < NUM  # the run was seen before its first isotherm was complete
        # the crossing needs two complete isotherms: never before, and it comes while running
        assert all(s[3] is None for s in seen if s[1] < 2 * NUM)
        first = next(s for s in seen if s[3] is not None)
        assert first[1] >= 2 * NUM and first[3] >= 2
        assert any(s[3] == 2 for s in seen) or first[0] != "running"
        lefts = [s[2] for s in running if s[2] is not None]
        assert lefts[-1] < lefts[0]  # time left goes down

        runs = get(port, "/api/runs")
        assert len(runs) == 1
        r = runs[0]
        assert set(r) >= {
            "run_id",
            "procedure",
            "status",
            "points_done",
            "points_total",
            "fridge_time_s",
            "estimated_left_s",
        }
        assert (r["procedure"], r["status"], r["points_done"], r["points_total"]) == (
            "field_isotherms",
            "completed",
            3 * NUM,
            3 * NUM,
        )
        assert r["estimated_left_s"] == 0
        detail = get(port, f"/api/runs/{r['run_id']}")
        # fridge time: the phases' sum, parking included; the estimate was made on the same twin
        assert r["fridge_time_s"] == pytest.approx(sum(detail["phases"].values()))
        assert r["fridge_time_s"] == pytest.approx(detail["estimated_total_s"], rel=0.05)
        assert detail["parameters"]["num"] == NUM
        assert detail["parameters"]["temperatures"] == [0.06, 0.12, 0.24]
        assert detail["interruptions"] == []
        online = detail["online"]
        assert online["isotherms"] == 3
        truth = detail["truth"]
        assert abs(online["x_c"] - truth["B_c"]) < 5 * online["x_c_err"] + 2e-4  # [T]
        assert online["R_c"] == pytest.approx(truth["R_c"], rel=0.05)
        now = detail["now"]
        assert now["setpoints"]["V_g"] == {"value": 15.0, "units": "V"}
        assert now["readings"]["T_mc"]["units"] == "K"
        assert now["readings"]["R"]["value"] > 0
        # the plot data: the heat map of R over (T, B) and one line cut per isotherm
        plot = get(port, f"/api/runs/{r['run_id']}/data")
        assert plot["kind"] == "map" and (plot["y_dim"], plot["x_dim"]) == ("T", "B")
        heat = np.array(plot["heat"]["log10_R"], dtype=float)
        assert heat.shape == (3, NUM) and np.isfinite(heat).all()
        assert heat[0].min() < np.log10(truth["R_c"]) < heat[0].max()  # the 60 mK isotherm crosses R_c
        assert [c["value"] for c in plot["cuts"]] == [0.06, 0.12, 0.24]
        assert all(len(c["R"]) == NUM for c in plot["cuts"])
        assert plot["collapse"]["znu"] == pytest.approx(truth["znu"], rel=0.2)
        assert get(port, "/api/queue")["items"] == []


def test_only_get_every_other_method_is_refused(tmp_path):
    port = free_port()
    with view_server(tmp_path / "data", port):
        for path in ("/", "/api/runs", "/api/runs/1", "/api/queue", "/api/events", "/anything"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                status, _ = http(port, path, method)
                assert status == 405, (method, path, status)
        assert http(port, "/api/runs/1")[0] == 404
        assert http(port, "/static/nope.js")[0] == 404
        status, page = http(port, "/")
        assert status == 200 and "qbs_lab live view" in page
        status, js = http(port, "/static/plotly.min.js")
        assert status == 200 and len(js) > 1_000_000  # served from the installed plotly wheel


def test_a_host_other_than_loopback_gets_a_warning(tmp_path):
    # the port is taken on 127.0.0.1, so the wildcard bind fails after the warning: nothing listens
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            qbs_lab("view", "--data", str(tmp_path), "--host", "0.0.0.0", "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "warning: serving on 0.0.0.0, not only on this machine's loopback" in lines[0]
    assert lines[1].startswith("qbs-lab view: error: cannot serve the page on 0.0.0.0:")
    assert "Traceback" not in done.stderr


def test_run_with_view_serves_the_page_beside_it_and_stops_with_it(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    run = paced_run(data, 100, "--view", str(port))
    try:
        statuses = []
        deadline = time.monotonic() + 120
        while run.poll() is None and time.monotonic() < deadline:
            status, runs = http(port, "/api/runs") if listening_addresses(port) else (None, None)
            if status == 200 and runs:
                statuses.append(runs[0]["status"])
            time.sleep(0.2)
        out = run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out
    assert "running" in statuses
    assert f"live view: http://127.0.0.1:{port}/" in out
    time.sleep(0.5)
    assert listening_addresses(port) == set()  # the page went with the run


def test_queue_items_with_estimates_and_the_night_finish(tmp_path):
    from datetime import datetime

    from qbs_lab.procedure import load_procedure, parse_settings
    from qbs_lab.runs import estimate_plan
    from qbs_lab.station import load_station
    from tests.view_support import STATION

    data = tmp_path / "data"
    items = [("field_isotherms", ["num=5", "temperatures=0.06,0.12"]), ("gate_sweep", ["num=11"])]
    for procedure, settings in items:
        cmd = ["queue", "add", procedure, "--data", str(data)]
        for s in settings:
            cmd += ["--set", s]
        subprocess.run(qbs_lab(*cmd), check=True, capture_output=True, timeout=60)
    port = free_port()
    with view_server(data, port):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            q = get(port, "/api/queue")
            if q["finish"] is not None:
                break
            assert [i["estimate_note"] for i in q["items"]] in (["estimating"] * 2, [None, "estimating"])
            time.sleep(0.3)
    assert [(i["position"], i["procedure"], i["status"], i["run_id"]) for i in q["items"]] == [
        (1, "field_isotherms", "pending", None),
        (2, "gate_sweep", "pending", None),
    ]
    config = load_station(STATION)
    expected = []
    for procedure, settings in items:
        proc = load_procedure(procedure)
        expected.append(estimate_plan(proc.plan(parse_settings(proc, settings)), config).total)
    assert [i["estimate_s"] for i in q["items"]] == pytest.approx(expected)
    assert q["left_s"] == pytest.approx(sum(expected))
    finish = datetime.fromisoformat(q["finish"])
    now = datetime.fromisoformat(q["now"])
    assert (finish - now).total_seconds() == pytest.approx(sum(expected), abs=1.0)
    assert json.dumps(q, allow_nan=False)

"""The live view's web server: the page, its JavaScript, and a small read-only JSON API.

Routes (GET only; any other method gets 405, so nothing can be started, stopped or changed from here):

    /                         the page
    /static/{file}            its HTML, JS and CSS; /static/plotly.min.js from the installed plotly
    /api/runs                 every run, newest first (run_id, procedure, status, points_done,
                              points_total, fridge_time_s, estimated_left_s, ...)
    /api/runs/{run_id}        one run: the above, parameters, the latest online result, interruptions,
                              phases, current setpoints and readings, environment checks, its log's tail
    /api/runs/{run_id}/data   the plots' data, thinned for display (heat map, line cuts, collapse)
    /api/queue                the queue: items (position, procedure, status, run_id, estimate_s) and
                              the clock time the night will finish
    /api/events               server-sent events: "change" when the catalog, the followed run's store
                              or log changed (at most about once a second)

Bound to 127.0.0.1 by default: watch from another machine through an SSH tunnel (see the README).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from qbs_lab.view.night import NightView
from qbs_lab.view.reader import DataReader

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "host_warning", "make_app", "port_problem", "serve"]

#: the page's fixed, documented address
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642
#: how often the event stream looks at the files [s], and the fewest seconds between two events
POLL_S = 0.2
MIN_EVENT_INTERVAL_S = 0.9

_STATIC = files("qbs_lab.view") / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


class ReadOnly:
    """ASGI middleware: any HTTP method but GET and HEAD is refused with 405 on every path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            response = JSONResponse(
                {"error": "the live view is read-only: only GET"}, status_code=405, headers={"Allow": "GET"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def make_app(data_dir: str | Path, station: str | Path | None = "station.yaml") -> Starlette:
    reader = DataReader(data_dir)
    night = NightView(reader, Path(station) if station else None)

    async def page(request: Request) -> Response:
        return Response((_STATIC / "index.html").read_bytes(), media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return FileResponse(_plotly_js(), media_type="text/javascript")
        resource = _STATIC / name
        suffix = Path(name).suffix
        if "/" in name or suffix not in _TYPES or not resource.is_file():
            return _JSON({"error": f"no file {name}"}, status_code=404)
        return Response(resource.read_bytes(), media_type=_TYPES[suffix])

    async def runs(request: Request) -> Response:
        result = await asyncio.to_thread(reader.runs)
        return _JSON(result)

    async def run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        result = await asyncio.to_thread(reader.run, run_id)
        if result is None:
            return _JSON({"error": f"no run {run_id}"}, status_code=404)
        return _JSON(result)

    async def run_data(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        outer = request.query_params.get("outer")
        result = await asyncio.to_thread(
            reader.run_data, run_id, int(outer) if outer and outer.isdigit() else None
        )
        if result is None:
            return _JSON({"error": f"no run {run_id}"}, status_code=404)
        return _JSON(result)

    async def queue(request: Request) -> Response:
        return _JSON(await asyncio.to_thread(night.queue))

    async def events(request: Request) -> Response:
        follow = request.query_params.get("run")

        async def stream() -> AsyncIterator[str]:
            last_sig: Any = None
            last_sent = 0.0
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                run_id = follow or await asyncio.to_thread(reader.newest_running)
                sig = await asyncio.to_thread(reader.run_signature, run_id)
                now = time.monotonic()
                if sig != last_sig and now - last_sent >= MIN_EVENT_INTERVAL_S:
                    last_sig, last_sent = sig, now
                    yield f"event: change\ndata: {json.dumps({'run_id': run_id})}\n\n"
                elif now - last_sent > 15:  # a comment keeps proxies and tunnels from closing it
                    last_sent = now
                    yield ": keep-alive\n\n"
                await asyncio.sleep(POLL_S)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/favicon.ico", lambda request: Response(status_code=204), methods=["GET"]),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/api/runs/{run_id}", run, methods=["GET"]),
        Route("/api/runs/{run_id}/data", run_data, methods=["GET"]),
        Route("/api/queue", queue, methods=["GET"]),
        Route("/api/events", events, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(ReadOnly)])


def host_warning(host: str, port: int) -> str | None:
    """The warning for an address other than this machine's loopback, or None."""
    if is_loopback(host):
        return None
    return (
        f"serving on {host}, not only on this machine's loopback: anyone who can reach {host}:{port}"
        " sees the runs (the page is read-only); an SSH tunnel to 127.0.0.1 is safer (see the README)"
    )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    data_dir: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    station: str | Path | None = "station.yaml",
    quiet: bool = False,
) -> None:
    """Serve the page until Ctrl-C (or SIGTERM); see :func:`host_warning` for addresses other than
    loopback."""
    import uvicorn

    app = make_app(data_dir, station)
    shown = f"[{host}]" if ":" in host else host
    if not quiet:
        print(f"live view of {data_dir}: http://{shown}:{port}/  (read-only; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1, access_log=False
    )
    uvicorn.Server(config).run()


def port_problem(host: str, port: int) -> str | None:
    """Why the page cannot be served at host:port (one line), or None."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            return f"cannot serve the page on {host}:{port} ({err.strerror}); choose another with --port"
    return None

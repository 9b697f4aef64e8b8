"""Notifications: a station-configured shell command and/or webhook, called on queue and run events.

Station file::

    notify:
      command: 'notify-send "qbs-lab $QBS_EVENT" "$QBS_MESSAGE"'   # run by the shell
      webhook: https://chat.example.org/hooks/fridge                 # HTTP POST, JSON body
      events: [item_failed, suspended, queue_done]                   # optional filter (default: all)

Events: ``item_done``, ``item_failed``, ``suspended``, ``resumed``, ``queue_done``, ``run_done``.
:meth:`Notifier.send` never raises into the run: a command that fails, times out or cannot start, or a
webhook that cannot be reached, is logged (``logging`` logger ``qbs_lab.notify``, and the ``log``
callable if given, e.g. a run's :class:`~qbs_lab.runs.RunLog` ``write``) and returned as a failed
:class:`Delivery`. Both are called in turn, synchronously, each bounded by its timeout.

The command gets the event in its environment: ``QBS_EVENT``, ``QBS_TIME`` (ISO 8601, local time),
``QBS_HOST``, ``QBS_MESSAGE`` and ``QBS_RUN_ID`` (empty when not given), ``QBS_JSON`` (the whole
payload), and every field as ``QBS_<FIELD>`` (upper case; dicts and lists as JSON). The webhook gets
the payload as its JSON body: ``{"event": ..., "time": ..., "host": ..., "message": ..., <fields>}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["EVENTS", "Delivery", "Notifier", "validate_notify"]

EVENTS = ("item_done", "item_failed", "suspended", "resumed", "queue_done", "run_done")
KEYS = ("command", "webhook", "events")

logger = logging.getLogger("qbs_lab.notify")


@dataclass(frozen=True)
class Delivery:
    """How one channel (``command`` or ``webhook``) took an event: ok, and what happened."""

    channel: str
    ok: bool
    detail: str


def validate_notify(section: Any) -> list[str]:
    """Every problem of a ``notify:`` section, one line each (``notify.KEY: message``)."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return [f"notify: must be a mapping with command:, webhook: and/or events:, not {section!r}"]
    problems = []
    for key in section:
        if key not in KEYS:
            problems.append(f"notify.{key}: unknown key (allowed: {', '.join(KEYS)})")
    command = section.get("command")
    if command is not None and (not isinstance(command, str) or not command.strip()):
        problems.append(f"notify.command: must be a shell command (text), not {command!r}")
    url = section.get("webhook")
    if url is not None and (not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url)):
        problems.append(f"notify.webhook: must be an http:// or https:// URL, not {url!r}")
    events = section.get("events")
    if events is not None:
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            problems.append(f"notify.events: must be a list of events ({', '.join(EVENTS)}), not {events!r}")
        else:
            for e in events:
                if e not in EVENTS:
                    problems.append(f"notify.events: unknown event {e!r} (events: {', '.join(EVENTS)})")
    return problems


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


class Notifier:
    """Sends events to the station's ``notify:`` command and webhook.

    Parameters
    ----------
    section : dict or None
        The ``notify:`` section (``StationConfig.notify``); None or {}: nothing is sent.
    command_timeout, webhook_timeout : float
        Seconds (wall time) the command may run and the webhook may take.
    log : callable, optional
        Also told of every failure, one line (e.g. ``RunLog.write``).
    defaults : fields sent with every event (e.g. ``station="fridge-2"``)

    Raises :class:`ValueError` listing the problems of a bad section (:func:`validate_notify`).
    """

    def __init__(
        self,
        section: dict[str, Any] | None = None,
        *,
        command_timeout: float = 30.0,
        webhook_timeout: float = 5.0,
        log: Callable[[str], Any] | None = None,
        **defaults: Any,
    ) -> None:
        problems = validate_notify(section)
        if problems:
            raise ValueError("\n".join(problems))
        section = section or {}
        self.command: str | None = section.get("command")
        self.webhook: str | None = section.get("webhook")
        events = section.get("events")
        self.events: tuple[str, ...] = tuple(events) if events is not None else EVENTS
        self.command_timeout, self.webhook_timeout = command_timeout, webhook_timeout
        self.log, self.defaults = log, defaults

    @property
    def active(self) -> bool:
        return bool(self.command or self.webhook)

    def wants(self, event: str) -> bool:
        return self.active and event in self.events

    def send(self, event: str, **fields: Any) -> list[Delivery]:
        """Tell the command and the webhook about ``event``; never raises. One :class:`Delivery` per
        channel called (none when the event is filtered out or nothing is configured)."""
        if not self.wants(event):
            return []
        deliveries = []
        try:
            payload = self.payload(event, **fields)
            if self.command:
                deliveries.append(self._run_command(payload))
            if self.webhook:
                deliveries.append(self._post(payload))
        except Exception as err:  # never into the run, whatever happened
            deliveries.append(Delivery("notify", False, f"{type(err).__name__}: {err}"))
        for d in deliveries:
            if not d.ok:
                line = f"notification {event} by {d.channel} failed: {d.detail}"
                logger.warning(line)
                if self.log is not None:
                    try:
                        self.log(line)
                    except Exception:
                        logger.exception("the notifier's log failed")
        return deliveries

    def payload(self, event: str, **fields: Any) -> dict[str, Any]:
        """What is sent: event, time, host, message and run_id (maybe empty), then the fields."""
        fields = {**self.defaults, **fields}
        message = fields.pop("message", None)
        if not message:
            what = " ".join(f"{k} {fields[k]}" for k in ("procedure", "run_id", "item") if fields.get(k))
            message = f"qbs-lab: {event.replace('_', ' ')}" + (f": {what}" if what else "")
        return {
            "event": event,
            "time": datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "message": str(message),
            "run_id": fields.pop("run_id", None) or "",
            **fields,
        }

    def environment(self, payload: dict[str, Any]) -> dict[str, str]:
        """The command's environment: the process's plus QBS_* variables for the payload."""
        env = dict(os.environ)
        for key, value in payload.items():
            env["QBS_" + re.sub(r"[^A-Za-z0-9]", "_", str(key)).upper()] = _text(value)
        env["QBS_JSON"] = json.dumps(payload, default=str)
        return env

    def _run_command(self, payload: dict[str, Any]) -> Delivery:
        assert self.command is not None
        try:
            proc = subprocess.Popen(
                self.command,
                shell=True,
                env=self.environment(payload),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group: a timeout ends the shell's children too
            )
        except OSError as err:
            return Delivery("command", False, f"could not start: {err}")
        try:
            out, err_text = proc.communicate(timeout=self.command_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.communicate()
            return Delivery("command", False, f"did not finish within {self.command_timeout:g} s")
        if proc.returncode != 0:
            lines = (err_text or out).strip().splitlines()
            return Delivery(
                "command", False, f"exit status {proc.returncode}" + (f": {lines[-1][:300]}" if lines else "")
            )
        return Delivery("command", True, "exit status 0")

    def _post(self, payload: dict[str, Any]) -> Delivery:
        assert self.webhook is not None
        body = json.dumps(payload, default=str).encode()
        request = urllib.request.Request(
            self.webhook,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "qbs-lab"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.webhook_timeout) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            return Delivery("webhook", False, f"HTTP {err.code} {err.reason}")
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            return Delivery("webhook", False, f"cannot reach {self.webhook}: {reason}")
        return Delivery("webhook", 200 <= status < 300, f"HTTP {status}")

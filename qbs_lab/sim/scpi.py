"""Command parsing shared by all emulators: SCPI headers and the older "MNEMONIC? args" languages.

A command pattern is written as in the vendors' manuals: upper case is the short form, the whole word
the long form, square brackets mark optional nodes, ``#`` stands for a numeric suffix (captured), and a
trailing ``?`` marks the query form::

    "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]?"
    "RAMP:RATE:FIELD:#?"
    "OUTP?"                 # SR830: the argument follows the header after a space
    "RDGK?"                 # Lakeshore 372

Matching is case-insensitive and accepts the short or the long form of every node (nothing in between,
as SCPI requires). A message may chain several commands with ``;``; a chained command without a leading
``:`` or ``*`` is first tried from the root, then relative to the previous command's path (SCPI's rule).

Examples
--------
>>> p = Pattern("[:SOURce]:VOLTage[:LEVel]?")
>>> p.match("sour:volt:lev?")
()
>>> p.match(":VOLTAGE?")
()
>>> Pattern("RAMP:RATE:FIELD:#?").match("RAMP:RATE:FIELD:1?")
(1,)
>>> split_message('CONF:FIELD:TARG 0.1;RAMP')
['CONF:FIELD:TARG 0.1', 'RAMP']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Pattern", "parse_arguments", "split_header", "split_message"]

_NODE = re.compile(r"(\[?)(:?)([A-Za-z*]*)(#?)(\]?)")
_HEADER = re.compile(r"(\S+)\s*(.*)\Z", re.DOTALL)


def _node_regex(word: str, suffix: bool) -> str:
    if not word:  # a bare number node, e.g. the segment in RAMP:RATE:FIELD:1?
        return r"(\d+)"
    short = "".join(c for c in word if c.isupper() or c == "*")
    long_ = word.upper()
    forms = [re.escape(long_)] if short == long_ or not short else [re.escape(long_), re.escape(short)]
    body = "(?:" + "|".join(forms) + ")"
    if suffix:
        body += r"(\d*)"
    return body


@dataclass(frozen=True)
class Pattern:
    """A compiled command header pattern (see the module docstring for the syntax)."""

    text: str

    def __post_init__(self) -> None:
        text = self.text.strip()
        query = text.endswith("?")
        if query:
            text = text[:-1]
        parts: list[str] = []
        pos = 0
        for m in _NODE.finditer(text):
            if m.end() == m.start():
                continue
            if m.start() != pos:
                raise ValueError(f"bad command pattern {self.text!r} near {text[pos:]!r}")
            pos = m.end()
            optional, _colon, word, suffix, close = m.groups()
            if optional and not close:
                raise ValueError(f"unbalanced [ in {self.text!r}")
            # every node carries its colon; headers are matched with exactly one leading colon
            node = ":" + _node_regex(word, bool(suffix))
            parts.append(f"(?:{node})?" if optional else node)
        if pos != len(text):
            raise ValueError(f"bad command pattern {self.text!r}")
        regex = "".join(parts) + (r"\?" if query else "")
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "_regex", re.compile(regex + r"\Z", re.IGNORECASE))

    def match(self, header: str) -> tuple[int, ...] | None:
        """The numeric suffixes captured (``1`` where a suffix was left out), or None if no match."""
        m = self._regex.match(":" + header.lstrip(":"))  # type: ignore[attr-defined]
        if m is None:
            return None
        return tuple(int(g) if g else 1 for g in m.groups())


def split_message(message: str) -> list[str]:
    """Split a program message on ``;`` outside of quoted strings; empty parts are dropped."""
    if ";" not in message:  # the common case, without the character loop
        message = message.strip()
        return [message] if message else []
    parts: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    for ch in message:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            buf.append(ch)
        elif ch == ";":
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def split_header(command: str) -> tuple[str, str]:
    """Split ``"HEADER args"`` into header and argument text (the first whitespace separates them)."""
    command = command.strip()
    m = _HEADER.match(command)
    if m is None:
        return "", ""
    header, rest = m.group(1), m.group(2)
    # "OUTP?1" style (no space between '?' and the argument) is accepted by the SRS and Lakeshore parsers
    if "?" in header and not header.endswith("?"):
        i = header.index("?")
        header, rest = header[: i + 1], (header[i + 1 :] + " " + rest).strip()
    return header, rest.strip()


def parse_arguments(text: str) -> list[str]:
    """Comma-separated arguments, stripped; quoted strings keep their content without the quotes."""
    if not text.strip():
        return []
    out: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                buf.append(ch)
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf).strip())
    return out

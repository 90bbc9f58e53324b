"""Where the daemon's lines go: the systemd journal, syslog, or stderr.

- Under systemd (stderr is a journal stream: ``$JOURNAL_STREAM`` names it), every line goes
  to the journal over its native protocol, with its own priority and facility as fields
  (``journalctl -p notice`` filters, rsyslog files auth lines under auth.log) and no prefix
  of ours.  If the journal socket refuses a datagram, the line goes to stderr with a ``<N>``
  priority prefix instead, which journald reads too (``SyslogLevelPrefix=``, on by default).
- Detached (no ``-f``), lines go to syslog as saslauthd's do: ident ``saslauthpy``, the pid.
- In the foreground on a terminal or pipe, to stderr as ``saslauthpy[PID]: message``.

Every text is made printable first (``printable``): bytes a client sent that are not UTF-8
and control characters become ``\\xNN``, so no login can break a line, forge one, or make
the write fail.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import syslog

IDENT = "saslauthpy"
JOURNAL_SOCKET = "/run/systemd/journal/socket"

# Python's logging levels -> syslog priorities.
PRIORITY = {logging.CRITICAL: syslog.LOG_CRIT, logging.ERROR: syslog.LOG_ERR,
            logging.WARNING: syslog.LOG_WARNING, logging.INFO: syslog.LOG_INFO,
            logging.DEBUG: syslog.LOG_DEBUG}

_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS_BUT_LINES = {c: v for c, v in _CONTROLS.items() if chr(c) not in "\n\t"}


def printable(text: str, keep_lines: bool = False) -> str:
    """``text`` as valid, printable UTF-8: each byte that was not UTF-8 (kept by the
    protocol as a surrogate escape) and each control character becomes ``\\xNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").translate(
        _CONTROLS_BUT_LINES if keep_lines else _CONTROLS)


class Sink:
    """Writes one message at a syslog priority and facility.  Never raises."""

    def emit(self, priority: int, facility: int, message: str) -> None:
        raise NotImplementedError


class StderrSink(Sink):
    def emit(self, priority: int, facility: int, message: str) -> None:
        level = "error: " if priority <= syslog.LOG_ERR else \
            "warning: " if priority == syslog.LOG_WARNING else ""
        try:
            sys.stderr.write(f"{IDENT}[{os.getpid()}]: {level}{printable(message, True)}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


class SyslogSink(Sink):
    def __init__(self) -> None:
        syslog.openlog(IDENT, syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_AUTH)

    def emit(self, priority: int, facility: int, message: str) -> None:
        try:
            syslog.syslog(facility | priority, printable(message, True))
        except (OSError, ValueError):
            pass


def _field(name: str, value: str) -> bytes:
    data = value.encode()
    if b"\n" not in data:
        return b"%s=%s\n" % (name.encode(), data)
    # A value with newlines: the name, a newline, the length (64-bit little endian), the data.
    return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"


class JournalSink(Sink):
    """The journal's native protocol: one datagram of ``FIELD=value`` lines per message."""

    def __init__(self, path: str = JOURNAL_SOCKET):
        self.path = path
        self._sock: socket.socket | None = None

    def datagram(self, priority: int, facility: int, message: str) -> bytes:
        return b"".join((
            _field("MESSAGE", printable(message, True)),
            _field("PRIORITY", str(priority)),
            _field("SYSLOG_FACILITY", str(facility >> 3)),
            _field("SYSLOG_IDENTIFIER", IDENT),
        ))

    def emit(self, priority: int, facility: int, message: str) -> None:
        data = self.datagram(priority, facility, message)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(data, self.path)
            return
        except OSError:
            pass
        try:  # the stream to the journal still carries a <N> priority prefix
            lines = printable(message, True).replace("\n", f"\n<{priority}>")
            sys.stderr.write(f"<{priority}>{lines}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal (``$JOURNAL_STREAM`` = dev:inode)."""
    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


_current: Sink = StderrSink()


def current() -> Sink:
    return _current


def install(foreground: bool) -> Sink:
    """Choose the sink for this process (see the module's docstring) and use it from now on."""
    global _current
    if foreground and stderr_is_journal():
        _current = JournalSink()
    elif foreground:
        _current = StderrSink()
    else:
        _current = SyslogSink()
    return _current


class Handler(logging.Handler):
    """The daemon's own messages, through the current sink (facility auth, as saslauthd)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        priority = PRIORITY.get(record.levelno, syslog.LOG_INFO)
        _current.emit(priority, syslog.LOG_AUTH, message)

"""Audit trail: every decision to a JSON-lines file and/or a log line.  Never a password.

The file (``[audit] file``) gets one JSON object per decision, durations in seconds.  It is
opened in append mode and reopened on SIGHUP (logrotate).  A write that fails (full disk,
removed directory) is reported once on the daemon's log and the daemon keeps answering;
writing resumes when the disk has room again.

The log line (``[audit] syslog``) goes where the daemon's messages go (the journal, syslog
or stderr: ``logsinks``): failures always, at priority notice, successes with -V at info,
in saslauthd's words by default (``syslog_format = "saslauthd"``)::

    auth failure: [user=bob] [service=smtp] [realm=] [mech=sql] [reason=wrong password]
    auth success: [user=bob] [service=smtp] [realm=] [mech=sql]
    auth success (cached): [user=bob] [service=smtp] [realm=]

or as ``auth failure: {json}`` (``syslog_format = "json"``).  A request too broken to have
a login is ``bad request: [reason=...]``.  Whatever bytes a login or realm carries, the line
is written (``logsinks.printable``).
"""

from __future__ import annotations

import json
import logging
import os
import syslog
import time
from typing import TextIO

from . import logsinks
from .authenticator import Decision
from .config import SYSLOG_FACILITIES, AuditOptions
from .errors import ConfigError
from .hardening import create

log = logging.getLogger("saslauthpy")


def record(d: Decision, pid: int = 0) -> dict:
    req = d.request
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "pid": pid,  # the daemon process that answered
        "login": req.login if req else None,
        "realm": req.realm if req else None,
        "service": req.service if req else None,
        "client": req.client_addr if req else None,
        "peer_pid": d.peer.pid,
        "peer_uid": d.peer.uid,
        "backend": d.backend,
        "result": d.result,
        "reason": d.reason,
        "cache_hit": d.cached,
        "delay": round(d.delay, 6),  # seconds
        "latency": round(d.latency, 6),  # seconds
    }


def saslauthd_line(d: Decision) -> str:
    """saslauthd's own log line for a decision (saslauthd-main.c, do_auth)."""
    req = d.request
    if req is None:
        return f"bad request: [reason={d.reason}]"
    who = f"[user={req.login}] [service={req.service}] [realm={req.realm}]"
    if d.result == "ok":
        return f"auth success (cached): {who}" if d.cached else \
            f"auth success: {who} [mech={d.backend}]"
    return f"auth failure: {who} [mech={d.backend}] [reason={d.reason or 'Unknown'}]"


def json_line(d: Decision, rec: dict) -> str:
    head = "auth success: " if d.result == "ok" else "auth failure: "
    return head + json.dumps(rec, ensure_ascii=False)


class Audit:
    def __init__(self, options: AuditOptions, verbose: bool = False):
        self.options = options
        self.verbose = verbose
        self._file: TextIO | None = None
        self._failing = False
        self._pid = os.getpid()
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the file, and take the log format and facility from ``options``."""
        self._facility = SYSLOG_FACILITIES[self.options.facility]
        self._json = self.options.syslog_format == "json"
        if not self.options.file:
            self.close()
            return
        old = self._file
        try:
            fd = create(self.options.file, os.O_WRONLY | os.O_APPEND)  # never through a link
            self._file = open(fd, "a", encoding="utf-8", errors="backslashreplace")
            self._failing = False
        except (OSError, ConfigError) as exc:
            log.error("audit: cannot open %s: %s (decisions are not recorded there)",
                      self.options.file, exc)
            self._file = None
        if old is not None:
            try:
                old.close()
            except OSError:
                pass

    def __call__(self, d: Decision) -> None:
        to_log = self.options.syslog and (d.result != "ok" or self.verbose)
        if self._file is None and not to_log:
            return
        rec = record(d, self._pid) if self._file is not None or self._json else {}
        if self._file is not None:
            try:
                self._file.write(json.dumps(rec, ensure_ascii=False) + "\n")
                self._file.flush()
                if self._failing:
                    self._failing = False
                    log.warning("audit: writing to %s again", self.options.file)
            except OSError as exc:
                if not self._failing:
                    self._failing = True
                    log.error("audit: cannot write %s: %s (still answering requests)",
                              self.options.file, exc)
        if to_log:
            line = logsinks.printable(json_line(d, rec) if self._json else saslauthd_line(d))
            priority = syslog.LOG_INFO if d.result == "ok" else syslog.LOG_NOTICE
            logsinks.current().emit(priority, self._facility, line)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

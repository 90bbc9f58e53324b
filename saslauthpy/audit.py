"""Audit trail: one JSON line per decision, to a file and/or syslog.  Never a password.

The file is opened in append mode and reopened on SIGHUP (logrotate).  A write
that fails (full disk, removed directory) is reported once on the daemon's log
and the daemon keeps answering; writing resumes when the disk has room again.
Syslog gets saslauthd's kind of line: failures always, successes with -V; in the
foreground (-f, -d) those lines go to stderr instead, as saslauthd's do.
"""

from __future__ import annotations

import json
import logging
import os
import syslog
import time
from typing import TextIO

from .authenticator import Decision
from .config import SYSLOG_FACILITIES, AuditOptions

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
        "delay": round(d.delay, 3),
        "latency_ms": round(d.latency * 1000, 3),
    }


class Audit:
    def __init__(self, options: AuditOptions, verbose: bool = False, foreground: bool = False):
        self.options = options
        self.verbose = verbose
        self.foreground = foreground
        self._file: TextIO | None = None
        self._failing = False
        self._pid = os.getpid()
        if options.syslog:
            syslog.openlog("saslauthpy", syslog.LOG_PID, SYSLOG_FACILITIES[options.facility])
        self.reopen()

    def reopen(self) -> None:
        if not self.options.file:
            return
        old = self._file
        try:
            self._file = open(self.options.file, "a", encoding="utf-8", errors="backslashreplace")
            self._failing = False
        except OSError as exc:
            log.error("audit: cannot open %s: %s (decisions are not recorded there)",
                      self.options.file, exc)
            self._file = None
        if old is not None:
            try:
                old.close()
            except OSError:
                pass

    def __call__(self, d: Decision) -> None:
        to_syslog = self.options.syslog and (d.result != "ok" or self.verbose)
        if self._file is None and not to_syslog:
            return
        rec = record(d, self._pid)
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
        if to_syslog:
            line = ("auth success: " if d.result == "ok" else "auth failure: ") + json.dumps(
                rec, ensure_ascii=False)
            if self.foreground:  # in the foreground saslauthd prints these on stderr
                log.info("%s", line)
                return
            level = syslog.LOG_INFO if d.result == "ok" else syslog.LOG_NOTICE
            syslog.syslog(level, line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

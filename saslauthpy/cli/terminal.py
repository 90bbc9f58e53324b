"""What the three commands share with the terminal: exit statuses, a closed pipe or Ctrl-C
without a traceback, one-line usage errors, and reading a password without echo.

Exit statuses (saslauthpy(8), testsaslauthpy(8), saslauthpy-admin(8)):

    0    success
    1    runtime error: the command could not do its work (bad configuration, missing file,
         daemon unreachable, already running...), or its output pipe was closed
    2    usage error: unknown option, missing or malformed argument
    130  interrupted (Ctrl-C)

testsaslauthpy adds testsaslauthd's 255 for a NO and 75 for a temporary failure.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import NoReturn

OK, ERROR, USAGE = 0, 1, 2
INTERRUPTED = 130


def run(main: Callable[[], int]) -> int:
    """Call ``main``; a closed stdout (``cmd | head``) or Ctrl-C ends it quietly."""
    try:
        try:
            return main()
        finally:  # also after argparse's --help, which leaves by SystemExit
            sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads any more: stop writing (also at exit, when Python flushes stdout).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ERROR
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return INTERRUPTED


class Parser(argparse.ArgumentParser):
    """argparse with saslauthd-style errors: one line naming the problem, exit status 2."""

    def error(self, message: str) -> NoReturn:
        hint = f"{self.prog} --help"
        sys.stderr.write(f"{self.prog}: {message}; see {hint}\n")
        raise SystemExit(USAGE)


class NoPassword(Exception):
    """No password could be read: the message says why."""


def read_password(from_stdin: bool, confirm: bool, prompt: str = "Password: ") -> bytes:
    """A password from the first line of stdin (``from_stdin``) or else from a prompt
    without echo on the terminal, asked twice if ``confirm``."""
    if from_stdin:
        password = sys.stdin.buffer.readline().rstrip(b"\r\n")
    else:
        try:
            with open("/dev/tty", "rb"):
                pass
        except OSError:
            raise NoPassword("no terminal to ask for the password on: use --password-stdin")
        try:
            first = getpass.getpass(prompt)
            if confirm and getpass.getpass("Again (for verification): ") != first:
                raise NoPassword("passwords don't match; nothing changed")
        except EOFError:
            raise NoPassword("no password given") from None
        password = first.encode("utf-8", "surrogateescape")
    if not password:
        raise NoPassword("empty password")
    if b"\0" in password:
        raise NoPassword("the password contains a NUL byte")
    return password

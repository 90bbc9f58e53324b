"""``testsaslauthpy``: testsaslauthd's flags, output lines and exit codes, and a little more.

    testsaslauthpy -u USER [-p PASSWORD | --password-stdin] [-r REALM] [-s SERVICE]
                   [-f SOCKET] [-R REPEAT] [-a ADDR] [-v]

Prints ``N: OK "Success."`` or ``N: NO "authentication failed"`` per attempt, as
testsaslauthd does; ``-v`` adds the daemon's own reply text.  Without ``-p`` the password is
asked for on the terminal without echo, or read from stdin with ``--password-stdin``.
Like testsaslauthd it sends four fields; ``-a ADDR`` adds the fifth.

Exit status of the last attempt: 0 OK, 255 NO (as testsaslauthd), 75 a temporary failure
(the daemon answered ``NO [ALERT] ...``: a backend is down, not a wrong password), 1 the
daemon could not be asked, 2 a usage error.
"""

from __future__ import annotations

import getopt
import os
import socket
import sys

from .. import protocol
from . import terminal

DEFAULT_SOCKET = "/run/saslauthd/mux"
NO = 255
TEMPFAIL = 75  # EX_TEMPFAIL (sysexits.h)


def usage(prog: str, problem: str = "") -> int:
    if problem:
        sys.stderr.write(f"{prog}: {problem}\n")
    sys.stderr.write(
        f"{prog}: usage: {prog} -u username [-p password | --password-stdin]\n"
        "              [-r realm] [-s servicename] [-a clientaddr]\n"
        "              [-f socket path] [-R repeatnum] [-v]\n"
    )
    return terminal.USAGE


class Unreachable(Exception):
    """The daemon could not be asked; the message is testsaslauthd's words for it."""


def ask(path: str, request: bytes) -> str:
    """Send one request; the daemon's reply text."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise Unreachable(f"socket() : {exc.strerror}") from None
    with s:
        try:
            s.connect(path)
        except OSError as exc:
            raise Unreachable(f"connect() : {exc.strerror}") from None
        try:
            s.sendall(request)
        except OSError:
            raise Unreachable("write failed") from None
        head = _read(s, 2)
        if len(head) < 2:
            raise Unreachable("size read failed")
        count = int.from_bytes(head, "big")
        if count < 2:
            raise Unreachable("bad response from saslauthd")
        body = _read(s, min(count, 1024))
        if len(body) < min(count, 1024):
            raise Unreachable("read failed")
    return body.decode("utf-8", "replace")


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def status_of(reply: str) -> int:
    if reply.startswith("OK"):
        return 0
    return TEMPFAIL if reply.startswith("NO [ALERT]") else NO


def main(argv: list[str] | None = None) -> int:
    return terminal.run(lambda: _main(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    prog = os.path.basename(sys.argv[0]) or "testsaslauthpy"
    if prog.endswith(".py") or prog == "__main__":
        prog = "testsaslauthpy"
    try:
        opts, rest = getopt.getopt(argv, "p:u:r:s:f:R:a:vh", ["password-stdin", "help"])
    except getopt.GetoptError as exc:
        return usage(prog, str(exc))
    o = dict(opts)
    if "-h" in o or "--help" in o:
        sys.stdout.write(__doc__.split("\n\n", 1)[1])
        return 0
    if rest:
        return usage(prog, f"unexpected argument {rest[0]!r}")
    if "-u" not in o:
        return usage(prog)
    if "-p" in o and "--password-stdin" in o:
        return usage(prog, "-p and --password-stdin exclude each other")
    try:
        repeat = int(o.get("-R", "0") or 0)
    except ValueError:
        return usage(prog, f"-R {o['-R']!r}: not a number")
    if "-p" in o:
        password: str | bytes = o["-p"]
    else:
        try:
            password = terminal.read_password("--password-stdin" in o, confirm=False)
        except terminal.NoPassword as exc:
            sys.stderr.write(f"{prog}: {exc}\n")
            return terminal.ERROR
    try:
        request = protocol.format_request(o["-u"], password, o.get("-s", "imap"),
                                          o.get("-r", ""), o.get("-a"))
    except ValueError as exc:
        return usage(prog, str(exc))
    status = NO
    for i in range(repeat or 1):
        print(f"{i}: ", end="", flush=True)
        try:
            reply = ask(o.get("-f", DEFAULT_SOCKET), request)
        except Unreachable as exc:
            sys.stdout.flush()
            sys.stderr.write(f"{exc}\n")
            status = terminal.ERROR
            continue
        status = status_of(reply)
        line = 'OK "Success."' if status == 0 else 'NO "authentication failed"'
        if "-v" in o:
            line += f' (daemon: "{reply}")'
        print(line, flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())

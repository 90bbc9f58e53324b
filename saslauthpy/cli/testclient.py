"""``testsaslauthpy``: testsaslauthd's flags, output lines and exit codes.

    testsaslauthpy -u USER -p PASSWORD [-r REALM] [-s SERVICE] [-f SOCKET] [-R REPEAT]

Prints ``N: OK "Success."`` or ``N: NO "authentication failed"`` per attempt and
exits 0 if the last attempt succeeded, 255 otherwise (1 on a usage error).
Like testsaslauthd it sends four fields; ``-a ADDR`` adds the fifth.
"""

from __future__ import annotations

import getopt
import os
import socket
import sys

from .. import protocol

DEFAULT_SOCKET = "/run/saslauthd/mux"


def usage(prog: str) -> int:
    sys.stderr.write(
        f"{prog}: usage: {prog} -u username -p password\n"
        "              [-r realm] [-s servicename]\n"
        "              [-f socket path] [-R repeatnum]\n"
    )
    return 1


def verify(path: str, user: str, password: str, service: str, realm: str,
           client_addr: str | None) -> int:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        sys.stderr.write(f"socket() : {exc.strerror}\n")
        return -1
    with s:
        try:
            s.connect(path)
        except OSError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"connect() : {exc.strerror}\n")
            return -1
        try:
            s.sendall(protocol.format_request(user, password, service, realm, client_addr))
        except (OSError, ValueError):
            sys.stderr.write("write failed\n")
            return -1
        head = _read(s, 2)
        if len(head) < 2:
            sys.stderr.write("size read failed\n")
            return -1
        count = int.from_bytes(head, "big")
        if count < 2:
            sys.stderr.write("bad response from saslauthd\n")
            return -1
        body = _read(s, min(count, 1024))
        if len(body) < min(count, 1024):
            sys.stderr.write("read failed\n")
            return -1
    if body.startswith(b"OK"):
        print('OK "Success."')
        return 0
    print('NO "authentication failed"')
    return -1


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


def main(argv: list[str] | None = None) -> int:
    prog = os.path.basename(sys.argv[0]) or "testsaslauthpy"
    try:
        opts, _ = getopt.getopt(sys.argv[1:] if argv is None else argv, "p:u:r:s:f:R:a:")
    except getopt.GetoptError:
        return usage(prog)
    o = dict(opts)
    if "-u" not in o or "-p" not in o:
        return usage(prog)
    try:
        repeat = int(o.get("-R", "0") or 0)
    except ValueError:
        repeat = 0
    result = -1
    for i in range(repeat or 1):
        print(f"{i}: ", end="", flush=True)
        result = verify(o.get("-f", DEFAULT_SOCKET), o["-u"], o["-p"], o.get("-s", "imap"),
                        o.get("-r", ""), o.get("-a"))
    sys.stdout.flush()
    return result & 0xFF


if __name__ == "__main__":
    raise SystemExit(main())

"""A private ``/dev/log`` for a test: a datagram socket the test reads, which a command run
through ``DevLog.wrap`` sees as /dev/log (in a private mount namespace, ``unshare --mount``,
with a small /dev of its own: the host's null, zero, random, urandom, full, tty and shm, and
/dev/log pointing at the test's socket).  The host's /dev is never changed."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from harness import need

SCRIPT = r"""
set -e
host="$DEVLOG_DIR/hostdev"
mkdir -p "$host"
mount --rbind /dev "$host"
mount -t tmpfs -o mode=755 devlog /dev
for n in null zero full random urandom tty; do
    touch "/dev/$n"
    mount --bind "$host/$n" "/dev/$n"
done
mkdir /dev/shm
mount --rbind "$host/shm" /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s "$DEVLOG_DIR/log.sock" /dev/log
umount -l "$host"
exec "$@"
"""

_HEADER = re.compile(rb"^<(\d+)>")


class DevLog:
    def __init__(self, tmp: Path):
        need("unshare")
        self.dir = Path(tmp)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.dir / "log.sock"))
        self.received: list[tuple[int, bytes]] = []

    def wrap(self, cmd: list[str]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "env",
                f"DEVLOG_DIR={self.dir}", "sh", "-c", SCRIPT, "sh", *cmd]

    def wait_for(self, needle: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
        """The first datagram containing ``needle``: (priority value, message bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            for pri, msg in self.received:
                if needle in msg:
                    return pri, msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no syslog line with {needle!r}; got {self.received}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            m = _HEADER.match(data)
            self.received.append((int(m.group(1)) if m else -1, data))

    def close(self) -> None:
        self.sock.close()

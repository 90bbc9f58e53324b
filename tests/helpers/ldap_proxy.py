"""A TCP proxy in front of slapd that answers users' binds late, and counts them.

``SlowBinds(upstream_host, upstream_port, delay).start()`` listens on loopback; every
LDAP message is forwarded as it is, except that the answer to a bind whose DN starts with
``uid=`` (a user's, not the service's or an anonymous one) is held ``delay`` seconds.
``binds[dn]`` counts the binds each DN sent: what a password policy on the server would
count.  Only the outer BER framing and the bind request's DN are read.
"""

from __future__ import annotations

import collections
import socket
import threading
import time

BIND_REQUEST, BIND_RESPONSE = 0x60, 0x61


def _length(buf: bytes, at: int) -> tuple[int, int] | None:
    """(length, offset of the contents) of the BER length at ``at``; None if incomplete."""
    if at >= len(buf):
        return None
    first = buf[at]
    if first < 0x80:
        return first, at + 1
    n = first & 0x7F
    if at + 1 + n > len(buf):
        return None
    return int.from_bytes(buf[at + 1:at + 1 + n], "big"), at + 1 + n


def messages(buf: bytearray) -> list[bytes]:
    """Take the whole LDAPMessages off the front of ``buf``."""
    out = []
    while buf:
        found = _length(buf, 1)
        if found is None or found[1] + found[0] > len(buf):
            break
        end = found[1] + found[0]
        out.append(bytes(buf[:end]))
        del buf[:end]
    return out


def parts(message: bytes) -> tuple[int, int, bytes]:
    """(message id, protocolOp tag, the op's contents)."""
    id_len, at = _length(message, _length(message, 1)[1] + 1)
    msgid = int.from_bytes(message[at:at + id_len], "big")
    tag = message[at + id_len]
    op_len, op_at = _length(message, at + id_len + 1)
    return msgid, tag, message[op_at:op_at + op_len]


def bind_dn(op: bytes) -> str:
    """The name of a BindRequest (after its version INTEGER)."""
    version_len, at = _length(op, 1)
    dn_len, dn_at = _length(op, at + version_len + 1)
    return op[dn_at:dn_at + dn_len].decode("utf-8", "replace")


class SlowBinds:
    def __init__(self, upstream_host: str, upstream_port: int, delay: float):
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self.binds: collections.Counter[str] = collections.Counter()
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port = self._listen.getsockname()[1]
        self.uri = f"ldap://127.0.0.1:{self.port}/"
        self._lock = threading.Lock()

    def start(self) -> SlowBinds:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._listen.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            slow: set[int] = set()  # message ids of users' binds on this connection
            threading.Thread(target=self._pipe, args=(client, server, slow, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, slow, False),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, slow: set[int],
              requests: bool) -> None:
        buf = bytearray()
        try:
            while data := src.recv(65536):
                buf += data
                for message in messages(buf):
                    msgid, tag, op = parts(message)
                    if requests and tag == BIND_REQUEST and bind_dn(op).startswith("uid="):
                        with self._lock:
                            self.binds[bind_dn(op)] += 1
                        slow.add(msgid)
                    elif not requests and tag == BIND_RESPONSE and msgid in slow:
                        slow.discard(msgid)
                        time.sleep(self.delay)
                    dst.sendall(message)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

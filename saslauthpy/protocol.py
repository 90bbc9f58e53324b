"""The saslauthd wire format: pure functions, no I/O.

A request is four or five *counted strings* (a 2-byte big-endian length, then
that many bytes): login, password, service, realm and, from cyrus-sasl's
development branch on, the client address (``ip;port``).  Released libsasl2
2.1.28 and its testsaslauthd send four and wait, so a request is complete as
soon as four fields are in; a fifth is taken only when its bytes came with them.

The reply is one counted string starting with ``OK`` or ``NO``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_FIELD = 256  # saslauthd's MAX_REQ_LEN
FIELDS = ("login", "password", "service", "realm", "client_addr")


@dataclass(frozen=True, slots=True)
class Request:
    """One authentication question.  ``password`` stays bytes: it is only ever hashed."""

    login: str
    password: bytes
    service: str = ""
    realm: str = ""
    client_addr: str = ""

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return (
            f"Request(login={self.login!r}, service={self.service!r}, "
            f"realm={self.realm!r}, client_addr={self.client_addr!r})"
        )


class Incomplete(Exception):
    """More bytes are needed before the request can be parsed."""


class Malformed(Exception):
    """The request can never be valid; ``reply`` is what saslauthd would answer (or None)."""

    def __init__(self, reason: str, reply: bytes | None):
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


def _text(raw: bytes) -> str:
    # Logins and realms are usually UTF-8; keep any other byte losslessly.
    return raw.decode("utf-8", "surrogateescape")


def parse_request(buf: bytes | bytearray, max_field: int = MAX_FIELD) -> Request:
    """Parse a request from ``buf``.

    Raises ``Incomplete`` while fewer than four whole fields are present and
    ``Malformed`` for a request that can never be answered OK (an oversized field
    is refused as soon as its length is seen, as saslauthd does).
    """
    fields: list[bytes] = []
    pos = 0
    end = len(buf)
    while len(fields) < 5:
        if end - pos < 2:
            break
        n = (buf[pos] << 8) | buf[pos + 1]
        if n > max_field:
            name = FIELDS[len(fields)]
            raise Malformed(f"{name} exceeded maximum length {max_field}", format_reply("NO "))
        if end - pos - 2 < n:
            break
        fields.append(bytes(buf[pos + 2 : pos + 2 + n]))
        pos += 2 + n
    if len(fields) < 4:
        raise Incomplete()
    login, password, service, realm = fields[:4]
    client_addr = fields[4] if len(fields) == 5 else b""
    if not login:
        raise Malformed("empty login", format_reply("NO NULL login received"))
    if not password:
        raise Malformed("empty password", format_reply("NO NULL password received"))
    for name, value in (("login", login), ("password", password), ("service", service),
                        ("realm", realm), ("client_addr", client_addr)):
        if b"\0" in value:
            # saslauthd truncates at the NUL and may answer OK to "user\0junk".
            raise Malformed(f"NUL byte in {name}", format_reply(f"NO NUL byte in {name}"))
    return Request(_text(login), password, _text(service), _text(realm), _text(client_addr))


def encode_field(value: bytes | str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(raw) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def format_request(login: str | bytes, password: str | bytes, service: str | bytes = "",
                   realm: str | bytes = "", client_addr: str | bytes | None = None) -> bytes:
    """Encode a request; four fields unless ``client_addr`` is given (then five)."""
    parts = [login, password, service, realm]
    if client_addr is not None:
        parts.append(client_addr)
    return b"".join(encode_field(p) for p in parts)


def format_reply(text: str) -> bytes:
    return encode_field(text)


def parse_reply(buf: bytes) -> str:
    """Decode a whole reply; raises ``Incomplete`` if it is not all there."""
    if len(buf) < 2:
        raise Incomplete()
    n = (buf[0] << 8) | buf[1]
    if len(buf) - 2 < n:
        raise Incomplete()
    return buf[2 : 2 + n].decode("utf-8", "replace")

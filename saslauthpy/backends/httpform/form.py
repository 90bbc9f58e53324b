"""The HTTP side of httpform, as pure functions: the form body, the request bytes, the
status line.

The body is ``httpform_data`` with its tokens replaced, as saslauthd's
``create_post_data`` does: ``%u`` login, ``%p`` password, ``%r`` realm, ``%%`` a ``%``,
and (ours) ``%s`` the service; any other ``%x`` stays as it is.  Every value is
URL-encoded byte by byte, everything but ``A-Z a-z 0-9`` becoming ``%XX`` (saslauthd's
``url_escape``), so ``&``, ``=``, ``+``, spaces, line breaks and non-ASCII bytes in a
password reach the form intact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?\r?\n")
TOKENS = {"u": "login", "p": "password", "r": "realm", "s": "service"}


def url_escape(value: bytes) -> bytes:
    return b"".join(bytes((b,)) if b in _SAFE else b"%%%02X" % b for b in value)


def form_body(template: str, values: dict[str, bytes]) -> bytes:
    """``template`` with each token replaced by the URL-encoded value it names."""
    out = bytearray()
    raw = template.encode("utf-8", "surrogateescape")
    i = 0
    while True:
        j = raw.find(b"%", i)
        if j < 0 or j == len(raw) - 1:
            out += raw[i:]
            return bytes(out)
        out += raw[i:j]
        token = chr(raw[j + 1])
        if token == "%":
            out += b"%"
        elif token in TOKENS:
            out += url_escape(values[TOKENS[token]])
        else:
            out += raw[j:j + 2]
        i = j + 2


def post_request(path: str, host_header: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\n"
            f"Host: {host_header}\r\n"
            "Connection: close\r\n"
            "User-Agent: saslauthpy\r\n"
            "Accept: */*\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


@dataclass(frozen=True, slots=True)
class Status:
    code: int
    phrase: str  # printable ASCII, shortened


def parse_status(line: bytes) -> Status | None:
    """``HTTP/1.1 204 No Content`` -> Status(204, "No Content"); None if not a status line."""
    m = _STATUS.fullmatch(line)
    if m is None:
        return None
    phrase = (m.group(2) or b"").decode("ascii", "replace")
    return Status(int(m.group(1)), "".join(c if " " <= c <= "~" else "?" for c in phrase)[:80])

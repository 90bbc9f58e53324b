"""The little of IMAP4rev1 (RFC 3501) that a LOGIN needs: pure functions, no I/O.

``login_chunks`` builds ``tag LOGIN user password``.  Each argument is a quoted string
when it can be one (7-bit, no CR/LF/NUL; ``"`` and ``\\`` escaped), else a literal
(``{n}`` + CRLF + n raw bytes): saslauthd quotes everything, so a password with a
non-ASCII byte or a line break never reaches the server intact there.  A synchronizing
literal needs the server's ``+`` before its bytes, so the command comes back in chunks:
send one, wait for the continuation, send the next.  With LITERAL+ (RFC 7888) the
literal is non-synchronizing and the whole command is one chunk.

``classify`` turns the tagged reply into OK / NO / BAD and the response code
(RFC 5530: ``AUTHENTICATIONFAILED``, ``UNAVAILABLE``, ``PRIVACYREQUIRED`` ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5530 codes after which a NO means "try later", not "wrong password".
TEMPORARY_CODES = frozenset({"UNAVAILABLE", "SERVERBUG", "PRIVACYREQUIRED", "LIMIT",
                             "INUSE", "CANNOT"})
LITERAL_MINUS_MAX = 4096  # RFC 7888: LITERAL- allows non-synchronizing literals up to this

_CODE = re.compile(rb"\[([A-Za-z0-9-]+)(?: ([^\]]*))?\]")


class Unsendable(ValueError):
    """The value contains a NUL, which IMAP cannot carry in LOGIN."""


def needs_literal(value: bytes) -> bool:
    return any(b > 0x7F or b in (0x0A, 0x0D) for b in value)


def quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def login_chunks(tag: bytes, login: bytes, password: bytes,
                 capabilities: frozenset[str] = frozenset()) -> list[bytes]:
    """``tag LOGIN login password`` CRLF, split where a synchronizing literal must wait."""
    chunks: list[bytes] = []
    current = tag + b" LOGIN"
    for value in (login, password):
        if b"\0" in value:
            raise Unsendable("a NUL byte cannot be sent in an IMAP LOGIN")
        if not needs_literal(value):
            current += b" " + quoted(value)
        elif "LITERAL+" in capabilities or (
                "LITERAL-" in capabilities and len(value) <= LITERAL_MINUS_MAX):
            current += b" {%d+}\r\n" % len(value) + value
        else:
            chunks.append(current + b" {%d}\r\n" % len(value))
            current = value
    chunks.append(current + b"\r\n")
    return chunks


def capabilities(line: bytes) -> frozenset[str] | None:
    """The capabilities in a ``[CAPABILITY ...]`` code or a ``* CAPABILITY`` line."""
    text = line.rstrip(b"\r\n")
    if text.upper().startswith(b"* CAPABILITY "):
        return frozenset(text[13:].decode("ascii", "replace").upper().split())
    m = _CODE.search(text)
    if m and m.group(1).upper() == b"CAPABILITY" and m.group(2):
        return frozenset(m.group(2).decode("ascii", "replace").upper().split())
    return None


@dataclass(frozen=True, slots=True)
class Reply:
    status: str  # "OK", "NO", "BAD", "PREAUTH", "BYE" or "" (not a status reply)
    code: str  # the response code, upper case, or ""
    text: str  # the human-readable rest, printable ASCII, shortened

    @property
    def temporary(self) -> bool:
        return self.code in TEMPORARY_CODES


def parse_status(line: bytes, tag: bytes) -> Reply | None:
    """The status reply in ``line`` if it is tagged ``tag`` (``b"*"`` for untagged)."""
    prefix = tag + b" "
    if not line.startswith(prefix):
        return None
    rest = line[len(prefix):].rstrip(b"\r\n")
    word, _, text = rest.partition(b" ")
    status = word.upper().decode("ascii", "replace")
    if status not in ("OK", "NO", "BAD", "PREAUTH", "BYE"):
        return Reply("", "", _printable(rest))
    code = ""
    m = _CODE.match(text)
    if m:
        code = m.group(1).decode("ascii").upper()
        text = text[m.end():].lstrip()
    return Reply(status, code, _printable(text))


def _printable(raw: bytes, limit: int = 120) -> str:
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in raw.decode("ascii", "replace"))
    return text[:limit]

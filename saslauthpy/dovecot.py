"""The Dovecot auth client protocol, server side: pure state, no I/O.

Postfix (``smtpd_sasl_type = dovecot``, ``xsasl_dovecot_server.c``), Exim (the ``dovecot``
authenticator) and chasquid ask an auth server over this line protocol.  Lines end in LF,
fields are separated by TAB, and a field's TAB, LF, CR, NUL and \\001 are written as
\\001 followed by ``t``, ``n``, ``r``, ``0``, ``1`` (Dovecot's tab-escaping).

    S: VERSION 1 2 / MECH PLAIN plaintext / MECH LOGIN plaintext / SPID / CUID / COOKIE / DONE
    C: VERSION 1 0 / CPID <pid>
    C: AUTH <id> <MECH> service=smtp [nologin] [lip=..] [rip=..] [secured] [resp=<base64>]
    S: CONT <id> <base64 challenge>      C: CONT <id> <base64 response>
    S: OK <id> user=<login>              S: FAIL <id> [user=..] [code=..] [temp] [reason=..]

As Dovecot 2.3 (and 2.4's ``auth-legacy`` listener) does, the server sends its whole
handshake on connect: Exim waits for it before saying anything.  A connection carries many
requests, and several may be in flight at once, each answered by its id.

``Session`` follows one connection: ``handle(line)`` returns what to do with each line (send
a reply, check a login, nothing) or raises ``ProtocolError`` when the connection must be
closed, exactly where Dovecot closes it (bad VERSION, unknown command, broken or duplicate
id, parameters after ``resp``).  Mechanisms are PLAIN and LOGIN; any other gets a FAIL (Dovecot
closes the connection instead: a FAIL costs the client's other requests nothing).
"""

from __future__ import annotations

import binascii
import os
from dataclasses import dataclass, field

from .protocol import MAX_FIELD, Request

MAJOR, MINOR = 1, 2  # Dovecot 2.3's auth client protocol
MAX_LINE = 4096  # bytes in one line; PLAIN with three 256-byte fields needs about 1100
MAX_WAITING = 64  # requests of one connection waiting for the client's CONT
CONT_TIMEOUT = 150.0  # seconds a request waits for its CONT (Dovecot's request timeout)
MECHANISMS = ("PLAIN", "LOGIN")
_UINT_MAX = 0xFFFFFFFF
_USERNAME, _PASSWORD = b"Username:", b"Password:"

_ESCAPES = {0: b"\x010", 1: b"\x011", 9: b"\x01t", 10: b"\x01n", 13: b"\x01r"}
_UNESCAPES = {ord("0"): b"\0", ord("1"): b"\x01", ord("t"): b"\t", ord("n"): b"\n",
              ord("r"): b"\r"}


def escape(value: str | bytes) -> bytes:
    """One field, tab-escaped."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if not any(b in _ESCAPES for b in raw):
        return raw
    return b"".join(_ESCAPES.get(b, bytes((b,))) for b in raw)


def unescape(raw: bytes) -> bytes:
    """One field, tab-unescaped (\\001 before any other byte stands for that byte)."""
    if b"\x01" not in raw:
        return raw
    out, i, n = bytearray(), 0, len(raw)
    while i < n:
        j = raw.find(b"\x01", i)
        if j < 0:
            out += raw[i:]
            break
        out += raw[i:j]
        if j + 1 < n:
            out += _UNESCAPES.get(raw[j + 1], raw[j + 1:j + 2])
        i = j + 2
    return bytes(out)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def handshake(spid: int, cuid: int, cookie: bytes | None = None) -> bytes:
    """What the server says first, before the client says anything."""
    mechs = b"".join(b"MECH\t%s\tplaintext\n" % m.encode() for m in MECHANISMS)
    cookie = cookie if cookie is not None else os.urandom(16)
    return (b"VERSION\t%d\t%d\n%sSPID\t%d\nCUID\t%d\nCOOKIE\t%s\nDONE\n"
            % (MAJOR, MINOR, mechs, spid, cuid, cookie.hex().encode()))


def ok_line(req_id: int, user: str) -> bytes:
    return b"OK\t%d\tuser=%s\n" % (req_id, escape(user))


def fail_line(req_id: int, user: str | None = None, reason: str = "", code: str = "",
              temp: bool = False) -> bytes:
    parts = [b"FAIL", str(req_id).encode()]
    if user is not None:
        parts.append(b"user=" + escape(user))
    if code:
        parts.append(b"code=" + code.encode())
    if temp:
        parts.append(b"temp")  # Dovecot 2.2's flag; 2.3 says code=temp_fail
    if reason:
        parts.append(b"reason=" + escape(reason))
    return b"\t".join(parts) + b"\n"


def cont_line(req_id: int, challenge: bytes) -> bytes:
    return b"CONT\t%d\t%s\n" % (req_id, binascii.b2a_base64(challenge, newline=False))


class ProtocolError(Exception):
    """The client broke the protocol: close the connection (``reason`` is for the log)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True, eq=False)
class Login:
    """A login and password ready to check, with what the client told about the session."""

    id: int
    user: str  # as the client sent it: the OK line's user=
    password: bytes
    service: str
    params: dict[str, str] = field(default_factory=dict)  # lip, rip, rport, secured, ...

    def request(self) -> Request:
        """The question for the authenticator.  ``user@realm`` is split at the last ``@``
        as libsasl splits it for saslauthd, so one user store answers both sockets alike;
        the client address is ``rip`` (``rip;rport`` when the port came too)."""
        login, at, realm = self.user.rpartition("@")
        if not at:
            login, realm = self.user, ""
        addr = self.params.get("rip", "")
        if addr and self.params.get("rport"):
            addr = f"{addr};{self.params['rport']}"
        return Request(login, self.password, self.service, realm, addr)

    def __repr__(self) -> str:  # never the password
        return f"Login(id={self.id}, user={self.user!r}, service={self.service!r})"


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``line``; when ``malformed`` is set the request was refused for that reason."""

    line: bytes
    malformed: str = ""


@dataclass(slots=True)
class _Waiting:
    mech: str
    service: str
    params: dict[str, str]
    since: float
    user: str | None = None  # LOGIN: the user name, once given


def _uint(raw: bytes, what: str) -> int:
    if not raw.isdigit() or len(raw) > 10 or int(raw) > _UINT_MAX:
        raise ProtocolError(f"broken {what}")
    return int(raw)


def _b64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""  # SASL's "empty response", as Dovecot reads it
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        return None


class Session:
    """One client connection's protocol state."""

    def __init__(self, max_field: int = MAX_FIELD, max_waiting: int = MAX_WAITING):
        self.max_field = max_field
        self.max_waiting = max_waiting
        self.stage = "version"  # then "cpid", then "ready"
        self.minor = 0
        self.waiting: dict[int, _Waiting] = {}  # asked for a CONT
        self.checking: dict[int, Login] = {}  # handed out to be checked

    @property
    def ready(self) -> bool:
        return self.stage == "ready"

    def handle(self, line: bytes, now: float = 0.0) -> Send | Login | None:
        """What one line (without its LF) asks for; raises ProtocolError to close."""
        if line.endswith(b"\r"):
            line = line[:-1]
        args = line.split(b"\t")
        cmd = args[0]
        if self.stage == "version":
            if (cmd != b"VERSION" or len(args) < 3 or not args[1].isdigit()
                    or not args[2].isdigit()):
                raise ProtocolError("invalid VERSION line")
            if int(args[1]) != MAJOR:
                raise ProtocolError(f"unsupported protocol version {_text(args[1])}")
            self.minor = int(args[2])
            self.stage = "cpid"
            return None
        if self.stage == "cpid":
            if cmd != b"CPID" or len(args) < 2 or _uint(args[1], "CPID") == 0:
                raise ProtocolError("expected CPID <pid> after VERSION")
            self.stage = "ready"
            return None
        if cmd == b"AUTH":
            return self._auth([unescape(a) for a in args[1:]], now)
        if cmd == b"CONT":
            if len(args) < 3:
                raise ProtocolError("broken CONT")
            return self._cont(_uint(args[1], "CONT id"), args[2])
        if cmd == b"CANCEL":
            if len(args) < 2:
                raise ProtocolError("broken CANCEL")
            req_id = _uint(args[1], "CANCEL id")
            self.waiting.pop(req_id, None)
            self.checking.pop(req_id, None)  # its answer, when it comes, is dropped
            return None
        raise ProtocolError(f"unknown command {_text(cmd[:32])!r}")

    # -- requests ---------------------------------------------------------------------

    def _auth(self, args: list[bytes], now: float) -> Send | Login | None:
        if len(args) < 2:
            raise ProtocolError("broken AUTH")
        req_id = _uint(args[0], "AUTH id")
        if req_id == 0:
            raise ProtocolError("broken AUTH id 0")
        if req_id in self.waiting or req_id in self.checking:
            raise ProtocolError(f"duplicate request id {req_id}")
        mech = _text(args[1]).upper()
        params: dict[str, str] = {}
        resp: bytes | None = None
        for i, arg in enumerate(args[2:], 2):
            name, eq, value = arg.partition(b"=")
            if name == b"resp":
                if i != len(args) - 1:
                    raise ProtocolError("AUTH parameters after resp")
                resp = value
            else:
                params[_text(name)] = _text(value) if eq else ""
        service = params.pop("service", "")
        if mech not in MECHANISMS:
            return Send(fail_line(req_id, reason="Unsupported authentication mechanism"),
                        f"unsupported mechanism {mech[:32]!r}")
        if not service:
            return Send(fail_line(req_id, reason="Missing service"), "missing service")
        if len(service.encode("utf-8", "surrogateescape")) > self.max_field:
            return Send(fail_line(req_id), f"service exceeded maximum length {self.max_field}")
        data: bytes | None = None
        if resp is not None and (resp or self.minor >= 2):
            # Exim and Postfix speak 1.0 and may send "resp=" meaning no initial response.
            data = _b64(resp)
            if data is None:
                return Send(fail_line(req_id, code="invalid_base64",
                                      reason="Invalid base64 data in initial response"),
                            "invalid base64 in the initial response")
        state = _Waiting(mech, service, params, now)
        if mech == "PLAIN":
            if data is None:
                return self._ask(req_id, state, b"")
            return self._plain(req_id, state, data)
        if not data:  # LOGIN
            return self._ask(req_id, state, _USERNAME)
        return self._login_step(req_id, state, data)

    def _cont(self, req_id: int, raw: bytes) -> Send | Login:
        state = self.waiting.pop(req_id, None)
        if state is None:
            if req_id in self.checking:
                self.checking.pop(req_id)
                return Send(fail_line(req_id, reason="Unexpected continuation"),
                            "continuation while the request was being checked")
            return Send(fail_line(req_id, reason="Authentication request timed out"))
        data = _b64(raw)
        if data is None:
            return Send(fail_line(req_id, code="invalid_base64",
                                  reason="Invalid base64 data in continued response"),
                        "invalid base64 in a continuation")
        if state.mech == "PLAIN":
            return self._plain(req_id, state, data)
        return self._login_step(req_id, state, data)

    def _ask(self, req_id: int, state: _Waiting, challenge: bytes) -> Send:
        if len(self.waiting) >= self.max_waiting:
            return Send(fail_line(req_id, reason="Too many requests waiting for a response"),
                        f"more than {self.max_waiting} requests waiting for a continuation")
        self.waiting[req_id] = state
        return Send(cont_line(req_id, challenge))

    def _plain(self, req_id: int, state: _Waiting, data: bytes) -> Send | Login:
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            return Send(fail_line(req_id), "PLAIN: expected authzid NUL authcid NUL password")
        authzid, authcid, password = parts
        user = _text(authcid)
        if authzid and authzid != authcid:
            # Logging in as someone else needs Dovecot's master users; we have none.
            return Send(fail_line(req_id, user),
                        "PLAIN: authorization identity differs from the login")
        return self._login(req_id, state, user, password)

    def _login_step(self, req_id: int, state: _Waiting, data: bytes) -> Send | Login:
        if state.user is None:
            if not data or b"\0" in data:
                return Send(fail_line(req_id), "LOGIN: empty or NUL in the user name")
            if len(data) > self.max_field:
                return Send(fail_line(req_id),
                            f"login exceeded maximum length {self.max_field}")
            state.user = _text(data)
            return self._ask(req_id, state, _PASSWORD)
        return self._login(req_id, state, state.user, data)

    def _login(self, req_id: int, state: _Waiting, user: str, password: bytes) -> Send | Login:
        for name, value in (("login", user.encode("utf-8", "surrogateescape")),
                            ("password", password)):
            if len(value) > self.max_field:
                return Send(fail_line(req_id), f"{name} exceeded maximum length {self.max_field}")
            if b"\0" in value:
                return Send(fail_line(req_id, user), f"NUL byte in {name}")
        if not password:
            return Send(fail_line(req_id, user), "empty password")
        login = Login(req_id, user, password, state.service, state.params)
        self.checking[req_id] = login
        return login

    # -- answers and time -------------------------------------------------------------

    def answer(self, login: Login, result: str, reason: str = "") -> bytes | None:
        """The reply line for a checked ``login`` (``result``: ok, fail, unknown, tempfail),
        or None if the client cancelled it meanwhile."""
        if self.checking.get(login.id) is not login:
            return None
        del self.checking[login.id]
        if result == "ok":
            return ok_line(login.id, login.user)
        if result == "tempfail":
            return fail_line(login.id, login.user, reason, code="temp_fail", temp=True)
        return fail_line(login.id, login.user, reason)

    def expire(self, older_than: float) -> int:
        """Forget requests that waited for a CONT since before ``older_than``."""
        old = [i for i, w in self.waiting.items() if w.since < older_than]
        for req_id in old:
            del self.waiting[req_id]
        return len(old)

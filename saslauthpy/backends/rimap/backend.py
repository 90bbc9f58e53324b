"""``-a rimap``: a login is good if an IMAP server accepts it (``LOGIN``), as saslauthd's
``auth_rimap`` does.

The server comes from ``-O host[/port]`` exactly as saslauthd reads it (``127.0.0.1/1143``,
``imap.example.org``, ``::1/143``, ``mail/imap2``; the port defaults to the ``imap``
service, 143) or from ``[rimap] server``.  ``host:port`` is refused at start with the
form to write instead (saslauthd cannot resolve it either).  Unlike saslauthd the name is
resolved for each login, so a DNS failure at boot does not stop the start
(cyrus-sasl#493).

Each login is one connection on the event loop (no worker thread is held while the
server thinks): greeting, optional ``STARTTLS``, ``LOGIN`` with correct quoting or
literals, ``LOGOUT``, all within ``timeout`` seconds.  Answers:

- tagged ``OK`` -> OK; ``NO`` (plain, ``[AUTHENTICATIONFAILED]``, ``[EXPIRED]`` ...) ->
  wrong password (IMAP cannot tell an unknown user from a wrong password);
- ``NO [UNAVAILABLE]`` and the other temporary codes, ``BAD``, a greeting that is not
  ``* OK``, a refused or timed-out connection, a TLS failure -> temporary failure.

Options (``[rimap]``): ``server``, ``tls`` (``none``, ``starttls`` or ``imaps``),
``ca_file``, ``timeout``.  See docs/remote-backends.md.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ...options import option
from ...protocol import Request
from .. import base
from ..base import FAIL, OK, Answer, Result, tempfail
from ..remote import describe, is_host, tls_context
from .imap import Reply, Unsendable, capabilities, login_chunks, parse_status

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("saslauthpy.rimap")

TLS_MODES = ("none", "starttls", "imaps")
MAX_LINE = 64 * 1024  # a CAPABILITY line is long; anything longer is not an IMAP server


@dataclass(frozen=True)
class Options:
    """The ``[rimap]`` table."""

    server: str = option("", "the IMAP server, host[/port] as saslauthd's -O reads it "
                         "(default: -O)")
    tls: str = option("none", "none, starttls (after the greeting) or imaps (TLS at once)",
                      choices=TLS_MODES)
    ca_file: str = option("", "CA certificates that sign the server's (default: the "
                          "system's store)")
    timeout: float = option(10.0, "seconds for one whole login: connect, TLS, LOGIN",
                            positive=True, duration=True)


def parse_server(raw: str, where: str) -> tuple[str, str]:
    """saslauthd's ``host[/port]``: split at the first ``/``; the port is a number or a
    service name.  Returns (host, port) with the port as given ("" = default)."""
    host, slash, port = raw.strip().partition("/")
    if not host:
        raise ConfigError(f"{where}rimap needs the IMAP server: -O host[/port] "
                          f"(e.g. -O 127.0.0.1/143) or [rimap] server")
    if slash and not port:
        raise ConfigError(f"{where}{raw!r}: nothing after '/': write host/port, e.g. {host}/143")
    if not is_host(host):
        name, colon, number = host.rpartition(":")
        if colon and number.isdigit() and name:
            bare = name.strip("[]")
            raise ConfigError(f"{where}{raw!r}: rimap reads host/port, as saslauthd does "
                              f"(a ':' is not understood there either): write {bare}/{number}")
        raise ConfigError(f"{where}{raw!r}: {host!r} is not a host name or an IP address; "
                          f"write host[/port], e.g. imap.example.org/143")
    return host, port


def resolve_port(port: str, tls: str, where: str) -> int:
    if not port:
        return 993 if tls == "imaps" else 143
    if port.isdigit():
        number = int(port)
        if not 0 < number < 65536:
            raise ConfigError(f"{where}port {port} is out of range (1-65535)")
        return number
    try:
        return socket.getservbyname(port, "tcp")
    except OSError:
        raise ConfigError(f"{where}port {port!r} is neither a number nor a service name in "
                          f"/etc/services; write host/143")


class Backend(base.Backend):
    name = "rimap"

    Options = Options

    def __init__(self, config: Config, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        opts = self.options
        where = "[rimap] server: " if opts.server else "-O: "
        self.host, port = parse_server(opts.server or config.mech_options, where)
        self.port = resolve_port(port, opts.tls, where)
        self.tls: ssl.SSLContext | None = None
        if opts.tls != "none":
            self.tls = tls_context(opts.ca_file, "[rimap] ")
        elif opts.ca_file:
            raise ConfigError("[rimap] ca_file is set but tls is \"none\": set tls = "
                              "\"starttls\" or \"imaps\", or drop ca_file")
        self.where = f"{self.host}/{self.port}"
        self._tags = itertools.count(1)

    async def authenticate(self, request: Request) -> Answer:
        try:
            async with asyncio.timeout(self.options.timeout):
                return await self._login(request)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            if isinstance(exc, Unsendable):
                return Answer(Result.FAIL, str(exc))
            return self._down(describe(exc))

    def _down(self, why: str) -> Answer:
        log.warning("rimap: IMAP server %s: %s", self.where, why)
        return tempfail(f"IMAP server {self.where}: {why}")

    async def _login(self, request: Request) -> Answer:
        implicit = self.tls if self.options.tls == "imaps" else None
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=implicit, server_hostname=self.host if implicit else None,
            limit=MAX_LINE)
        try:
            greeting = await reader.readline()
            reply = parse_status(greeting, b"*")
            if reply is None or reply.status != "OK":
                return self._down(_greeting_problem(greeting, reply))
            caps = capabilities(greeting) or frozenset()
            if self.options.tls == "starttls":
                tag = self._tag()
                writer.write(tag + b" STARTTLS\r\n")
                reply = await _tagged(reader, tag)
                if reply.status != "OK":
                    return self._down(f"STARTTLS refused: {reply.status} {reply.text}")
                await writer.start_tls(self.tls, server_hostname=self.host)
                caps = frozenset()  # what was said in clear does not count
            if "LOGINDISABLED" in caps:
                return self._down("the server disables LOGIN here (LOGINDISABLED): set "
                                  "[rimap] tls = \"starttls\" or \"imaps\"")
            tag = self._tag()
            login = request.login.encode("utf-8", "surrogateescape")
            chunks = login_chunks(tag, login, request.password, caps)
            reply = await _send_command(reader, writer, tag, chunks)
            writer.write(self._tag() + b" LOGOUT\r\n")
            return self._answer(reply)
        finally:
            writer.close()

    def _answer(self, reply: Reply) -> Answer:
        if reply.status == "OK":
            return OK
        if reply.status == "NO" and not reply.temporary:
            if reply.code in ("", "AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED"):
                return FAIL
            return Answer(Result.FAIL, f"IMAP server: [{reply.code}] {reply.text}")
        if reply.code == "PRIVACYREQUIRED":
            return self._down("the server wants TLS before LOGIN: set [rimap] tls")
        code = f"[{reply.code}] " if reply.code else ""
        return self._down(f"LOGIN answered {reply.status} {code}{reply.text}")

    def _tag(self) -> bytes:
        return b"s%d" % next(self._tags)


async def _tagged(reader: asyncio.StreamReader, tag: bytes) -> Reply:
    """Read until the status reply tagged ``tag``; untagged lines are skipped."""
    while True:
        line = await reader.readline()
        if not line:
            raise EOFError("the server closed the connection")
        reply = parse_status(line, tag)
        if reply is not None:
            return reply
        bye = parse_status(line, b"*")
        if bye is not None and bye.status == "BYE":
            raise EOFError(f"the server said BYE: {bye.text}")


async def _send_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        tag: bytes, chunks: list[bytes]) -> Reply:
    """Send a command whose synchronizing literals wait for the server's ``+``."""
    for chunk in chunks[:-1]:
        writer.write(chunk)
        while True:  # the continuation, or the command's end if the server refuses
            line = await reader.readline()
            if not line:
                raise EOFError("the server closed the connection")
            if line.startswith(b"+"):
                break
            reply = parse_status(line, tag)
            if reply is not None:
                return reply
    writer.write(chunks[-1])
    return await _tagged(reader, tag)


def _greeting_problem(greeting: bytes, reply: Reply | None) -> str:
    if not greeting:
        return "closed the connection without a greeting"
    if reply is not None and reply.status in ("BYE", "NO"):
        return f"not accepting logins ({reply.status} {reply.text})"
    if reply is not None and reply.status == "PREAUTH":
        return "pre-authenticates every connection, so it cannot check a password"
    return "the greeting is not an IMAP \"* OK\""

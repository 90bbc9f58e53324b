"""``-a httpform``: a login is good if a web form says so, as saslauthd's ``auth_httpform``
(built with ``--enable-httpform``; Debian's saslauthd is not) does.

Settings come from the saslauthd.conf named by ``-O`` (else ``/etc/saslauthd.conf`` if it
exists), keys ``httpform_host`` (default ``localhost``), ``httpform_port`` (80),
``httpform_uri`` and ``httpform_data``, and from the ``[httpform]`` TOML table (the same
keys, ``httpform_`` optional; a TOML value wins), which adds ``url`` (``http://`` or
``https://``, instead of host/port/uri), ``ca_file`` and ``timeout``.

Each login is one ``POST`` of the form (``form.form_body``) on its own connection, on the
event loop, within ``timeout`` seconds.  The answer is the status code: 2xx -> OK,
4xx -> wrong password (a form cannot tell an unknown user apart reliably), anything else
(5xx, a redirect, no answer, a refused connection, an untrusted certificate) -> temporary
failure.  saslauthd accepts only 200 and 204 and answers everything but 403 with "NO".
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import ssl
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...config import fill_options
from ...errors import ConfigError
from ...protocol import Request
from .. import base, saslauthd_conf
from ..base import FAIL, OK, Answer, Result, tempfail
from ..remote import describe, is_host, tls_context
from .form import form_body, parse_status, post_request

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("saslauthpy.httpform")

PREFIX = "httpform_"
FILE_KEYS = ("host", "port", "uri", "data")
MAX_HEAD = 16 * 1024  # status line and headers of interim (1xx) answers


@dataclass
class HttpformOptions:
    host: str = "localhost"  # httpform_host
    port: int = 80  # httpform_port
    uri: str = ""  # httpform_uri: the path (and query) the form is posted to
    data: str = ""  # httpform_data: the body, with %u %p %r %s tokens
    url: str = ""  # http(s)://host[:port]/path instead of host, port and uri
    ca_file: str = ""  # CA certificates for https; empty: the system's store
    timeout: float = 10.0  # seconds for one whole request


def _file_settings(config: Config) -> dict[str, Any]:
    path = config.mech_options or saslauthd_conf.DEFAULT_PATH
    if not config.mech_options and not os.path.exists(path):
        return {}
    found: dict[str, Any] = {}
    for key, entry in saslauthd_conf.read(path).items():
        if not key.startswith(PREFIX):
            continue  # other mechanisms' keys (ldap_*, krb5_*) share the file
        name = key[len(PREFIX):]
        if name not in FILE_KEYS:
            hint = difflib.get_close_matches(name, FILE_KEYS, 1)
            better = f"; did you mean {PREFIX}{hint[0]}?" if hint else ""
            raise ConfigError(f"{entry.where}: unknown key {key}{better}")
        found[name] = (saslauthd_conf.integer(entry, 1, 65535) if name == "port"
                       else entry.value)
    return found


def load_options(config: Config, options: Mapping[str, Any]) -> HttpformOptions:
    opts = HttpformOptions()
    table = {k.removeprefix(PREFIX): v for k, v in options.items()}
    fill_options(opts, {**_file_settings(config), **table}, "[httpform] ")
    if opts.timeout <= 0:
        raise ConfigError("[httpform] timeout: must be positive seconds")
    if not opts.data:
        raise ConfigError("httpform needs the form: httpform_data (e.g. user=%u&pass=%p) "
                          "in the -O file or data in [httpform]")
    return opts


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


def target(opts: HttpformOptions) -> Target:
    if opts.url:
        parts = urlsplit(opts.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"[httpform] url: {opts.url!r} is not an http:// or https:// URL")
        if parts.username or parts.fragment:
            raise ConfigError("[httpform] url: no user:password@ or #fragment, please")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ConfigError(f"[httpform] url: bad port in {opts.url!r}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(parts.scheme, parts.hostname, port, path)
    if not opts.uri:
        raise ConfigError("httpform needs where to post: httpform_uri (e.g. /auth) in the -O "
                          "file, or url in [httpform]")
    if not is_host(opts.host):
        raise ConfigError(f"[httpform] host: {opts.host!r} is not a host name or an IP address")
    if not 0 < opts.port < 65536:
        raise ConfigError(f"[httpform] port: {opts.port} is out of range (1-65535)")
    if not opts.uri.startswith("/") or any(c <= " " for c in opts.uri):
        raise ConfigError(f"[httpform] uri: {opts.uri!r} must be a path starting with '/' "
                          f"(URL-encode spaces)")
    return Target("http", opts.host, opts.port, opts.uri)


class Backend(base.Backend):
    name = "httpform"

    def __init__(self, config: Config, options: Mapping[str, Any]):
        super().__init__(config, options)
        self.opts = load_options(config, options)
        self.target = target(self.opts)
        self.tls: ssl.SSLContext | None = None
        if self.target.scheme == "https":
            self.tls = tls_context(self.opts.ca_file, "[httpform] ")
        elif self.opts.ca_file:
            raise ConfigError("[httpform] ca_file is set but the URL is http://: use https:// "
                              "or drop ca_file")

    async def authenticate(self, request: Request, pool: Executor) -> Answer:
        values = {"login": _raw(request.login), "password": request.password,
                  "realm": _raw(request.realm), "service": _raw(request.service)}
        payload = post_request(self.target.path, self.target.host_header,
                               form_body(self.opts.data, values))
        try:
            async with asyncio.timeout(self.opts.timeout):
                code, phrase = await self._post(payload)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            return self._down(describe(exc))
        if 200 <= code < 300:
            return OK
        if 400 <= code < 500:
            return FAIL if code == 403 else Answer(Result.FAIL, f"HTTP {code} {phrase}")
        if 300 <= code < 400:
            return self._down(f"HTTP {code} {phrase}: redirects are not followed; "
                              f"post to the final address")
        return self._down(f"HTTP {code} {phrase}")

    def _down(self, why: str) -> Answer:
        log.warning("httpform: %s: %s", self.target, why)
        return tempfail(f"{self.target}: {why}")

    async def _post(self, payload: bytes) -> tuple[int, str]:
        t = self.target
        reader, writer = await asyncio.open_connection(
            t.host, t.port, ssl=self.tls, server_hostname=t.host if self.tls else None,
            limit=MAX_HEAD)
        try:
            writer.write(payload)
            await writer.drain()
            while True:
                status = parse_status(await reader.readline())
                if status is None:
                    raise EOFError("the answer is not HTTP/1.x")
                if status.code >= 200 or status.code < 100:
                    return status.code, status.phrase
                while (await reader.readline()).strip():  # an interim answer's headers
                    pass
        finally:
            writer.close()


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


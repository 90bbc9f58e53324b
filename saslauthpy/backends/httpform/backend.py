"""``-a httpform``: a login is good if a web form says so, as saslauthd's ``auth_httpform``
(built with ``--enable-httpform``; Debian's saslauthd is not) does.

Settings (saslauthd's ``httpform_*`` keys from ``-O`` and the ``[httpform]`` table) are in
``settings``; the form and the HTTP bytes in ``form``.

Each login is one ``POST`` of the form (``form.form_body``) on its own connection, on the
event loop, within ``timeout`` seconds.  The answer is the status code: 2xx -> OK,
4xx -> wrong password (a form cannot tell an unknown user apart reliably), anything else
(5xx, a redirect, no answer, a refused connection, an untrusted certificate) -> temporary
failure.  saslauthd accepts only 200 and 204 and answers everything but 403 with "NO".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ...protocol import Request
from .. import base
from ..base import FAIL, OK, Answer, Result, tempfail
from ..remote import describe, tls_context
from .form import form_body, parse_status, post_request
from .settings import Options, load_settings, target

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("saslauthpy.httpform")

MAX_HEAD = 16 * 1024  # status line and headers of interim (1xx) answers


class Backend(base.Backend):
    name = "httpform"

    Options = Options

    def __init__(self, config: Config, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.s = load_settings(config, self.options)
        self.target = target(self.s)
        self.tls: ssl.SSLContext | None = None
        if self.target.scheme == "https":
            self.tls = tls_context(self.s.ca_file, "[httpform] ")
        elif self.s.ca_file:
            raise ConfigError("[httpform] ca_file is set but the URL is http://: use https:// "
                              "or drop ca_file")

    async def authenticate(self, request: Request) -> Answer:
        values = {"login": _raw(request.login), "password": request.password,
                  "realm": _raw(request.realm), "service": _raw(request.service)}
        payload = post_request(self.target.path, self.target.host_header,
                               form_body(self.s.data, values))
        try:
            async with asyncio.timeout(self.s.timeout):
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


"""The httpform backend's settings: saslauthd's ``httpform_*`` keys and ours, and where the
form goes.

Keys come from the saslauthd.conf named by ``-O`` (else ``/etc/saslauthd.conf`` if it
exists): ``httpform_host`` (default ``localhost``), ``httpform_port`` (80),
``httpform_uri`` and ``httpform_data``; and from the ``[httpform]`` TOML table (the same
keys, ``httpform_`` optional; a TOML value wins), which adds ``url`` (``http://`` or
``https://``, instead of host/port/uri), ``ca_file`` and ``timeout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from ...errors import ConfigError
from ...options import option
from .. import saslauthd_conf
from ..remote import is_host

if TYPE_CHECKING:
    from ...config import Config

PREFIX = "httpform_"
FILE_KEYS = ("host", "port", "uri", "data")


@dataclass(frozen=True)
class Options:
    """The ``[httpform]`` table: saslauthd.conf's keys (the ``httpform_`` prefix optional;
    None = not given: the -O file's value or the default applies) and ours."""

    ALIASES: ClassVar[Mapping[str, str]] = {PREFIX + k: k for k in FILE_KEYS}

    host: str | None = option(None, "httpform_host: the web server (default localhost)")
    port: int | None = option(None, "httpform_port (default 80)", min=1, max=65535)
    uri: str | None = option(None, "httpform_uri: the path the form is posted to")
    data: str | None = option(None, "httpform_data: the form, with %u %p %r %s tokens",
                              repr=False)
    url: str = option("", "http(s)://host[:port]/path, instead of host, port and uri")
    ca_file: str = option("", "CA certificates for https (default: the system's store)")
    timeout: float = option(10.0, "seconds for one whole request", positive=True,
                            duration=True)


@dataclass(frozen=True)
class Settings:
    """The table and the file's keys, resolved."""

    host: str
    port: int
    uri: str
    data: str = field(repr=False)
    url: str = ""
    ca_file: str = ""
    timeout: float = 10.0


def _file_settings(config: Config) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, entry in saslauthd_conf.read_prefixed(config.mech_options, PREFIX).items():
        if name not in FILE_KEYS:
            raise saslauthd_conf.unknown(entry, PREFIX, FILE_KEYS)
        found[name] = (saslauthd_conf.integer(entry, 1, 65535) if name == "port"
                       else entry.value)
    return found


def load_settings(config: Config, opts: Options) -> Settings:
    found = {"host": "localhost", "port": 80, "uri": "", "data": "", **_file_settings(config)}
    given = {k: getattr(opts, k) for k in FILE_KEYS if getattr(opts, k) is not None}
    s = Settings(**{**found, **given}, url=opts.url, ca_file=opts.ca_file,
                 timeout=opts.timeout)
    if not s.data:
        raise ConfigError("httpform needs the form: httpform_data (e.g. user=%u&pass=%p) "
                          "in the -O file or data in [httpform]")
    return s


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


def target(s: Settings) -> Target:
    if s.url:
        parts = urlsplit(s.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"[httpform] url: {s.url!r} is not an http:// or https:// URL")
        if parts.username or parts.fragment:
            raise ConfigError("[httpform] url: no user:password@ or #fragment, please")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ConfigError(f"[httpform] url: bad port in {s.url!r}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(parts.scheme, parts.hostname, port, path)
    if not s.uri:
        raise ConfigError("httpform needs where to post: httpform_uri (e.g. /auth) in the -O "
                          "file, or url in [httpform]")
    if not is_host(s.host):
        raise ConfigError(f"[httpform] host: {s.host!r} is not a host name or an IP address")
    if not s.uri.startswith("/") or any(c <= " " for c in s.uri):
        raise ConfigError(f"[httpform] uri: {s.uri!r} must be a path starting with '/' "
                          f"(URL-encode spaces)")
    return Target("http", s.host, s.port, s.uri)

"""One ``Config`` from a TOML file and saslauthd's command-line flags.

Flags win over the file, so ``saslauthpy -a pam -c -m /run/saslauthd`` means
exactly what it meant to saslauthd.  Every mistake raises ``ConfigError`` with
one line naming the key and the fix; the daemon refuses to start (or, on
SIGHUP, keeps its old configuration).

Backends, the throttle and the metrics listener read their own TOML table
(``[sql]``, ``[ldap]``, ``[throttle]`` ...) from ``Config.sections``.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from . import __version__
from .backends import MODULES
from .errors import ConfigError

DEFAULT_CONFIG = "/etc/saslauthpy/saslauthpy.toml"
DEFAULT_RUN_DIR = "/run/saslauthd"
DEFAULT_MECHANISM = "sql"
CACHE_BUCKET_BYTES = 96  # saslauthd's bucket size, used to turn -s KB into a number of entries


@dataclass
class ServerOptions:
    socket_mode: int = 0o777  # saslauthd's; access is controlled by the run directory's mode
    dir_mode: int = 0o755
    socket_group: str = ""  # chgrp the socket and run dir to this group (e.g. "sasl")
    max_field: int = 256
    read_timeout: float = 10.0  # seconds a client has to send its whole request
    max_connections: int = 4096  # beyond this the oldest unfinished connection is dropped
    shutdown_grace: float = 10.0  # seconds SIGTERM waits for requests in flight
    processes: int = 1  # event-loop processes sharing the socket and the cache (0 = one per CPU)
    reveal_reasons: bool = False  # tell "unknown user" from "wrong password" in replies


@dataclass
class CacheOptions:
    enabled: bool = False
    max_entries: int = 10266  # saslauthd's default table: 1711 slots x 6 buckets
    ttl: float = 28800.0
    negative_ttl: float = 0.0  # > 0 remembers a failed (login, password) pair this long


@dataclass
class AuditOptions:
    file: str = ""  # JSON lines; empty = none
    syslog: bool = True
    facility: str = "auth"


@dataclass
class Config:
    mechanisms: list[str] = field(default_factory=lambda: [DEFAULT_MECHANISM])
    mech_options: str = ""  # -O
    run_dir: str = DEFAULT_RUN_DIR
    threads: int = 5
    realm_join: bool = False  # -r
    foreground: bool = False
    verbose: bool = False
    config_file: str = ""
    server: ServerOptions = field(default_factory=ServerOptions)
    cache: CacheOptions = field(default_factory=CacheOptions)
    audit: AuditOptions = field(default_factory=AuditOptions)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def socket_path(self) -> str:
        return os.path.join(self.run_dir, "mux")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.run_dir, "saslauthd.pid")

    @property
    def control_path(self) -> str:
        return os.path.join(self.run_dir, "saslauthpy.control")

    def section(self, name: str) -> dict[str, Any]:
        return self.sections.get(name, {})


# Tables read by modules other than config.py itself.
OTHER_SECTIONS = {"throttle", "metrics"}
TOP_LEVEL = {"mechanisms", "mech_options", "run_dir", "threads", "realm_join", "verbose"}


def fill_options(obj: Any, table: dict[str, Any], where: str) -> None:
    """Set dataclass fields from a TOML table, checking names and types."""
    known = {f.name: f for f in fields(obj)}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{where}{key}: unknown key {key!r}; known keys: {', '.join(sorted(known))}"
            )
        current = getattr(obj, key)
        if key.endswith("_mode") and isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ConfigError(f"{where}{key}: {value!r} is not an octal mode like \"0660\"")
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}{key}: expected true or false, got {value!r}")
        elif isinstance(current, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}{key}: expected a number, got {value!r}")
            if value < 0:
                raise ConfigError(f"{where}{key}: must not be negative, got {value!r}")
            if isinstance(current, int) and not isinstance(current, bool):
                if value != int(value):
                    raise ConfigError(f"{where}{key}: expected a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
        elif isinstance(current, str) and not isinstance(value, str):
            raise ConfigError(f"{where}{key}: expected a string, got {value!r}")
        setattr(obj, key, value)


def load_toml(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: create it or drop --config")
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by uid {os.getuid()}")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}")
    cfg = Config(config_file=path)
    for key, value in data.items():
        if key in ("server", "cache", "audit"):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{key}] must be a table")
            fill_options(getattr(cfg, key), value, f"{path}: [{key}].")
        elif key in MODULES or key in OTHER_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{key}] must be a table")
            cfg.sections[key] = value
        elif key == "mechanisms":
            if isinstance(value, str):
                value = [value]
            if not value or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f'{path}: mechanisms must be a list of names like ["sql"]')
            cfg.mechanisms = [v.lower() for v in value]
        elif key in TOP_LEVEL:
            fill_options(cfg, {key: value}, f"{path}: ")
        else:
            known = sorted(TOP_LEVEL | {"server", "cache", "audit"} | set(MODULES) | OTHER_SECTIONS)
            raise ConfigError(f"{path}: unknown key {key!r}; known keys: {', '.join(known)}")
    return cfg


def arg_parser(prog: str = "saslauthpy") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        add_help=False,
        description="saslauthd-compatible authentication daemon.",
    )
    p.add_argument("-a", dest="mechanisms", metavar="MECH",
                   help="authentication mechanism; a comma list is a chain (e.g. sql,pam)")
    p.add_argument("-O", dest="mech_options", metavar="FILE",
                   help="mechanism option: config file for ldap, path for sasldb")
    p.add_argument("-m", dest="run_dir", metavar="DIR",
                   help=f"run directory (default {DEFAULT_RUN_DIR})")
    p.add_argument("-n", dest="threads", type=int, metavar="N", help="worker pool size (default 5)")
    p.add_argument("-c", dest="cache", action="store_true", help="enable the credential cache")
    p.add_argument("-s", dest="cache_kb", type=int, metavar="KB", help="cache size in KiB")
    p.add_argument("-t", dest="cache_ttl", type=int, metavar="SECONDS",
                   help="cache entry lifetime (default 28800)")
    p.add_argument("-l", dest="no_accept_lock", action="store_true",
                   help="accepted for compatibility (no accept lock is needed)")
    p.add_argument("-r", dest="realm_join", action="store_true", help="combine login@realm")
    p.add_argument("-d", dest="debug", action="store_true", help="debug: foreground and verbose")
    p.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground")
    p.add_argument("-V", dest="verbose", action="store_true", help="verbose logging")
    p.add_argument("-v", dest="version", action="store_true", help="print the version and exit")
    p.add_argument("-h", "--help", dest="help", action="store_true",
                   help="print this help and exit")
    p.add_argument("--config", metavar="FILE",
                   help=f"TOML configuration (default {DEFAULT_CONFIG} if it exists)")
    return p


def from_args(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    cfg = load_toml(path) if path else Config()
    if args.mechanisms:
        names = [m.strip().lower() for m in args.mechanisms.split(",")]
        if not all(names):
            raise ConfigError(f"-a {args.mechanisms!r}: empty mechanism name in the list")
        cfg.mechanisms = names
    if args.mech_options:
        cfg.mech_options = args.mech_options
    if args.run_dir:
        if not os.path.isabs(args.run_dir):
            raise ConfigError(f"-m {args.run_dir}: the run directory must be an absolute path")
        cfg.run_dir = args.run_dir
    if args.threads is not None:
        if args.threads < 0:
            raise ConfigError(f"-n {args.threads}: the number of workers must be 0 or more")
        cfg.threads = args.threads
    if args.cache:
        cfg.cache.enabled = True
    if args.cache_kb is not None:
        if args.cache_kb <= 0:
            raise ConfigError(f"-s {args.cache_kb}: the cache size must be a positive KiB count")
        cfg.cache.max_entries = max(1, args.cache_kb * 1024 // CACHE_BUCKET_BYTES)
    if args.cache_ttl is not None:
        if args.cache_ttl <= 0:
            raise ConfigError(f"-t {args.cache_ttl}: the cache lifetime must be positive seconds")
        cfg.cache.ttl = float(args.cache_ttl)
    if args.realm_join:
        cfg.realm_join = True
    if args.debug:
        cfg.foreground = cfg.verbose = True
    if args.foreground:
        cfg.foreground = True
    if args.verbose:
        cfg.verbose = True
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    for name in cfg.mechanisms:
        if name not in MODULES:
            raise ConfigError(
                f"unknown mechanism {name!r}: choose among {', '.join(sorted(MODULES))}"
            )
    if cfg.threads == 0:
        cfg.threads = 1  # saslauthd's -n 0 forks per connection; one pool thread is the nearest
    if cfg.server.max_field < 1 or cfg.server.max_field > 65535:
        raise ConfigError("[server] max_field: must be between 1 and 65535 bytes")
    if cfg.server.read_timeout <= 0:
        raise ConfigError("[server] read_timeout: must be positive seconds")
    if cfg.server.processes == 0:
        cfg.server.processes = os.cpu_count() or 1
    if cfg.server.processes > 1 and cfg.sections.get("metrics"):
        raise ConfigError("[metrics] needs [server] processes = 1: each process counts apart, "
                          "and one listener cannot see the others' counters yet")
    if cfg.server.max_connections < 1:
        raise ConfigError("[server] max_connections: must be at least 1")
    if cfg.cache.max_entries < 1:
        raise ConfigError("[cache] max_entries: must be at least 1")
    if cfg.audit.facility.lower() not in _FACILITIES:
        raise ConfigError(
            f"[audit] facility: {cfg.audit.facility!r} is not a syslog facility "
            f"({', '.join(sorted(_FACILITIES))})"
        )


_FACILITIES = {"auth", "authpriv", "daemon", "mail", "user"} | {f"local{i}" for i in range(8)}


def version_text() -> str:
    return (
        f"saslauthpy {__version__} (saslauthd-compatible)\n"
        f"authentication mechanisms: {' '.join(MODULES)}"
    )

"""One ``Config`` from a TOML file and saslauthd's command-line flags.

Flags win over the file, so ``saslauthpy -a pam -c -m /run/saslauthd`` means
exactly what it meant to saslauthd.  Every table of the file is a dataclass here
(backends' tables: the ``Options`` of their module), filled by ``options.load``;
every mistake raises ``ConfigError`` with one line naming the key and the fix, and
the daemon refuses to start (or, on SIGHUP, keeps its old configuration).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import syslog
import tomllib
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .backends import MODULES, options_class
from .errors import ConfigError
from .options import keys, load, option, unknown_key

DEFAULT_CONFIG = "/etc/saslauthpy/saslauthpy.toml"
DEFAULT_RUN_DIR = "/run/saslauthd"
DEFAULT_MECHANISM = "sql"
CACHE_BUCKET_BYTES = 96  # saslauthd's bucket size, used to turn -s KB into a number of entries

SYSLOG_FACILITIES = {
    "auth": syslog.LOG_AUTH, "authpriv": syslog.LOG_AUTHPRIV, "daemon": syslog.LOG_DAEMON,
    "mail": syslog.LOG_MAIL, "user": syslog.LOG_USER,
    **{f"local{i}": getattr(syslog, f"LOG_LOCAL{i}") for i in range(8)},
}


@dataclass
class ServerOptions:
    socket_mode: int = option(0o777, "mode of the socket (saslauthd's; access is controlled "
                              "by the run directory's mode)")
    dir_mode: int = option(0o755, "mode of the run directory when the daemon creates it")
    socket_group: str = option("", "group of the socket and of a new run directory (e.g. "
                               "\"sasl\")")
    max_field: int = option(256, "bytes per request field, as saslauthd (longer: \"NO \")",
                            min=1, max=65535)
    read_timeout: float = option(10.0, "seconds a client has to send its whole request",
                                 positive=True, duration=True)
    max_connections: int = option(4096, "connections each worker process holds, still "
                                  "sending or waiting for their answer; beyond it the oldest "
                                  "unfinished one is dropped", min=1)
    shutdown_grace: float = option(10.0, "seconds SIGTERM waits for requests in flight",
                                   duration=True)
    processes: int = option(0, "worker processes sharing the socket, the cache and the "
                            "penalties (0 = one per CPU)")
    accept: str = option("auto", "how the fast lane takes connections: \"thread\" (a "
                         "thread in epoll_wait), \"loop\" (the event loop) or \"auto\" "
                         "(thread when every check may run in its threads: local ones, LDAP "
                         "without SASL; else loop)",
                         choices=("auto", "thread", "loop"))
    reveal_reasons: bool = option(False, "tell \"unknown user\" from \"wrong password\" in "
                                  "replies")


@dataclass
class CacheOptions:
    enabled: bool = option(False, "the credential cache (-c)")
    max_entries: int = option(10266, "entries (saslauthd's default table: 1711 slots x 6 "
                              "buckets; -s)", min=1)
    ttl: float = option(28800.0, "seconds an entry lives (-t)", duration=True)
    negative_ttl: float = option(0.0, "> 0 remembers a failed (login, password) pair this "
                                 "long", duration=True)


@dataclass
class AuditOptions:
    file: str = option("", "JSON-lines audit file; empty = none")
    syslog: bool = option(True, "failures to the journal, syslog or stderr (successes too "
                          "with -V)")
    facility: str = option("auth", "syslog facility", choices=SYSLOG_FACILITIES)
    syslog_format: str = option("saslauthd", "the log line: saslauthd's \"auth failure: "
                                "[user=...] ...\" or \"json\"", choices=("saslauthd", "json"))


@dataclass
class ThrottleOptions:
    enabled: bool = option(True, "brute-force penalties on")
    base_delay: float = option(1.0, "seconds at the first counted failure", duration=True)
    max_delay: float = option(8.0, "cap for any single request, whoever caused the penalty",
                              duration=True)
    decay: float = option(30.0, "seconds without a failure for a key to drop one level",
                          positive=True, duration=True)
    per_user: bool = option(True, "a penalty per account (each backend's identity of a login)")
    per_address: bool = option(True, "a penalty per client address")
    ipv6_prefix: int = option(64, "IPv6 addresses share a penalty per network of this "
                              "prefix", min=1, max=128)
    exempt: list[str] = option([], "networks never penalised by address (e.g. "
                               "[\"10.0.0.0/8\"])")
    max_tracked: int = option(100_000, "keys kept in the shared table (when full, the lowest "
                              "penalty makes room)", min=1)
    redis: str = option("", "redis://host:port/db to share the penalty table across hosts")
    redis_prefix: str = option("saslauthpy:throttle:", "prefix of the keys in Redis")
    redis_timeout: float = option(0.05, "seconds per Redis round trip before falling back to "
                                  "the local table", duration=True)
    redis_retry: float = option(5.0, "seconds to stay on the local table after a Redis error",
                                duration=True)
    good_pairs: int = option(100_000, "(user, address) pairs remembered after a success; "
                             "their user's penalty does not hold them (0 = off)")
    good_pair_ttl: float = option(30 * 86400.0, "seconds a pair stays remembered after its "
                                  "last success", positive=True, duration=True)
    fingerprint_key_file: str = option("", "a file of at least 16 secret bytes shared by a "
                                       "fleet, keying the digests of wrong passwords "
                                       "(default with Redis: a key kept in Redis)")

    def __post_init__(self) -> None:
        if self.max_delay < self.base_delay:
            raise ConfigError("[throttle] max_delay: must be at least base_delay")
        if self.redis and not self.redis.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"[throttle] redis: {self.redis!r} is not a redis:// URL")
        for net in self.exempt:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(
                    f"[throttle] exempt: {net!r} is not a network like 10.0.0.0/8") from None


@dataclass
class MetricsOptions:
    listen: str = option("", "\"HOST:PORT\" or \"unix:/PATH\" to serve /metrics on; empty "
                         "= off")
    socket_mode: int = option(0o660, "mode of the UNIX socket")
    max_services: int = option(32, "distinct service labels before \"other\"")


@dataclass
class DovecotOptions:
    listen: str = option("", "a UNIX socket speaking the Dovecot auth protocol (Postfix's "
                         "smtpd_sasl_type = dovecot, Exim); empty = off")
    socket_mode: int = option(0o660, "mode of that socket")
    socket_owner: str = option("", "owner of that socket (e.g. \"postfix\")")
    socket_group: str = option("", "group of that socket (e.g. \"postfix\")")
    max_connections: int = option(1024, "connections per process; beyond, a stalled or the "
                                  "longest-idle one is closed", min=1)
    max_in_flight: int = option(8, "requests of one connection checked at once; more wait "
                                "unread", min=1)

    def __post_init__(self) -> None:
        if self.listen and not os.path.isabs(self.listen):
            raise ConfigError(f"[dovecot] listen: {self.listen!r} must be an absolute socket "
                              "path")


@dataclass
class Config:
    mechanisms: list[str] = option([DEFAULT_MECHANISM], "-a; a list is a chain")
    mech_options: str = option("", "-O: saslauthd.conf for ldap, the path for sasldb")
    run_dir: str = option(DEFAULT_RUN_DIR, "-m: socket mux, pid file, control socket")
    threads: int = option(5, "-n: threads in each backend's pool for blocking checks; 0 "
                          "means 1")
    realm_join: bool = option(False, "-r: check login@realm")
    verbose: bool = option(False, "-V: successes are logged too")
    foreground: bool = option(False, "-f", in_file=False)
    config_file: str = option("", "--config", in_file=False)
    server: ServerOptions = field(default_factory=ServerOptions)
    cache: CacheOptions = field(default_factory=CacheOptions)
    audit: AuditOptions = field(default_factory=AuditOptions)
    throttle: ThrottleOptions = field(default_factory=ThrottleOptions)
    metrics: MetricsOptions = field(default_factory=MetricsOptions)
    dovecot: DovecotOptions = field(default_factory=DovecotOptions)
    # each backend table given: its module's Options, or the raw table when that module
    # cannot be imported (it is checked, with the install hint, if the backend is used)
    backends: dict[str, Any] = option({}, in_file=False)

    @property
    def socket_path(self) -> str:
        return os.path.join(self.run_dir, "mux")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.run_dir, "saslauthd.pid")

    @property
    def control_path(self) -> str:
        return os.path.join(self.run_dir, "saslauthpy.control")

    def section(self, name: str) -> Any:
        """Backend ``name``'s options (None: its defaults)."""
        return self.backends.get(name)


def load_backend_table(name: str, table: Any, where: str) -> Any:
    try:
        cls = options_class(name)
    except ConfigError:  # not installed: unusable anyway, and refused if it is used
        if not isinstance(table, dict):
            raise ConfigError(f"{where.rstrip('. ')}: must be a table")
        return table
    return load(cls, table, where)


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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}): "
                          "save it as UTF-8")
    own = keys(Config)
    for key in data:
        if key not in own and key not in MODULES:
            raise unknown_key(f"{path}: ", key, [*own, *MODULES])
    cfg = load(Config, {k: v for k, v in data.items() if k not in MODULES}, f"{path}: ")
    cfg.config_file = path
    cfg.backends = {name: load_backend_table(name, table, f"{path}: [{name}].")
                    for name, table in data.items() if name in MODULES}
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
    cfg.mechanisms = [name.lower() for name in cfg.mechanisms]
    for name in cfg.mechanisms:
        if name not in MODULES:
            raise ConfigError(
                f"unknown mechanism {name!r}: choose among {', '.join(sorted(MODULES))}"
            )
    if not cfg.mechanisms:
        raise ConfigError('mechanisms: give at least one, e.g. ["sql"]')
    if cfg.threads == 0:
        cfg.threads = 1  # saslauthd's -n 0 forks per connection; one pool thread is the nearest
    if cfg.server.processes == 0:
        cfg.server.processes = len(os.sched_getaffinity(0)) or 1  # the CPUs we may run on


def version_text() -> str:
    return (
        f"saslauthpy {__version__} (saslauthd-compatible)\n"
        f"authentication mechanisms: {' '.join(MODULES)}"
    )

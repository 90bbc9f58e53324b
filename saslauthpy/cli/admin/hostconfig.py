"""The configuration the daemon on this host runs with, as saslauthpy-admin sees it.

The packaged unit runs ``saslauthpy-env``, which turns the variables of
``/etc/default/saslauthd`` (Debian), ``/etc/sysconfig/saslauthd`` (RHEL) and
``/etc/default/saslauthpy`` into the daemon's flags (``-a``, ``-O``, ``-m``, ``--config``...).
The admin reads the same files and runs the same script, so it finds the same mechanisms,
sasldb file and run directory (hence the same control socket) as the daemon:

- ``--defaults FILE``: that file, as the unit would;
- else, when the saslauthpy unit is installed and neither ``--config`` nor ``-m`` is given:
  those of the three files that exist;
- else: the TOML file (``--config``, or /etc/saslauthpy/saslauthpy.toml if present).

``--config`` and ``-m`` given to the admin win over what the files say.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from dataclasses import dataclass, field
from importlib import resources

from ... import config as configmod
from ...backends import MODULES, store_class
from ...errors import ConfigError

UNIT_FILES = ("/etc/systemd/system/saslauthpy.service",
              "/usr/lib/systemd/system/saslauthpy.service",
              "/lib/systemd/system/saslauthpy.service")
DEFAULTS_FILES = ("/etc/default/saslauthd", "/etc/sysconfig/saslauthd", "/etc/default/saslauthpy")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class Refused(Exception):
    """What the admin must not do with this host's daemon; the message says why."""


@dataclass
class DaemonView:
    config: configmod.Config
    defaults: list[str] = field(default_factory=list)  # the environment files read

    @property
    def source(self) -> str:
        if self.defaults:
            return ", ".join(self.defaults)
        return self.config.config_file or "the built-in defaults"


def read_environment_file(path: str) -> dict[str, str]:
    """``KEY=value`` lines as systemd's ``EnvironmentFile=`` reads them: comments and blank
    lines skipped, one pair of quotes around a value removed."""
    env: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            if line.lstrip().startswith(("#", ";")):
                continue
            m = _ASSIGNMENT.match(line.rstrip("\r\n"))
            if not m:
                continue
            value = m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                quote, value = value[0], value[1:-1]
                if quote == '"':
                    value = re.sub(r'\\(["\\$`])', r"\1", value)
            env[m.group(1)] = value
    return env


def wrapper_arguments(env: dict[str, str]) -> list[str]:
    """The daemon's arguments that ``saslauthpy-env`` builds from ``env`` (the script
    itself, shipped in the package, is run: one definition of the mapping)."""
    script = resources.files("saslauthpy") / "share" / "systemd" / "saslauthpy-env"
    with resources.as_file(script) as path:
        res = subprocess.run(["/bin/sh", str(path), "--print"], capture_output=True, text=True,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env}, timeout=30)
    if res.returncode != 0:
        raise ConfigError(f"saslauthpy-env: {res.stderr.strip()}")
    return res.stdout.splitlines()[1:]  # the first line is the daemon's path


def defaults_files(explicit: str | None, hand_run: bool) -> list[str]:
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"--defaults {explicit}: no such file")
        return [explicit]
    if hand_run or not any(os.path.exists(unit) for unit in UNIT_FILES):
        return []
    return [path for path in DEFAULTS_FILES if os.path.isfile(path)]


def daemon_view(config_file: str | None, run_dir: str | None,
                defaults: str | None = None) -> DaemonView:
    """The daemon's ``Config``; raises ConfigError naming the file at fault."""
    files = defaults_files(defaults, hand_run=bool(config_file or run_dir))
    argv: list[str] = []
    env: dict[str, str] = {}
    try:
        for path in files:
            env.update(read_environment_file(path))
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: {exc.strerror}") from None
    if files:
        argv = wrapper_arguments(env)
    if config_file:
        argv += ["--config", config_file]
    if run_dir:
        argv += ["-m", run_dir]
    parser = configmod.arg_parser()
    parser.exit_on_error = False
    try:
        args, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"{', '.join(files)}: {exc}") from None
    if extra:
        raise ConfigError(f"{', '.join(files)}: unknown daemon argument {extra[0]!r}")
    try:
        cfg = configmod.from_args(args)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {', '.join(files)})" if files else str(exc)) from None
    return DaemonView(cfg, files)


def keeps_users(name: str) -> bool:
    """Whether mechanism ``name`` keeps users saslauthpy-admin can write (sql, sasldb)."""
    try:
        store_class(name)
    except ConfigError:
        return False
    return True


def choose_store(view: DaemonView, name: str | None, file: str | None) -> str:
    """The store to use: ``--store NAME`` if the daemon reads it (or ``--file`` names the
    file explicitly), else the first of the daemon's mechanisms that keeps users."""
    mechanisms = view.config.mechanisms
    said = f"{','.join(mechanisms)} (from {view.source})"
    if name is not None:
        if name not in MODULES or not keeps_users(name):
            stores = [m for m in MODULES if keeps_users(m)]
            raise Refused(f"--store {name}: unknown store; use one of {', '.join(stores)}")
        if name not in mechanisms and file is None:
            raise Refused(f"--store {name}: the daemon does not read it: its mechanisms are "
                          f"{said}; add {name} there first, or name a file with --file")
        return name
    for mech in mechanisms:
        if keeps_users(mech):
            return mech
    stores = [m for m in MODULES if keeps_users(m)]
    raise Refused(f"the daemon checks passwords with {said}, which keeps no users "
                  f"saslauthpy-admin can write (system accounts are managed with useradd and "
                  f"passwd); to keep users here, add {' or '.join(stores)} to its mechanisms")

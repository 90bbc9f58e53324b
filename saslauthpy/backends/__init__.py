"""Backends, one module each, chosen by name (``-a NAME`` or ``mechanisms = [...]``)."""

from __future__ import annotations

import importlib

from ..errors import ConfigError

# mechanism name -> module under saslauthpy.backends
MODULES = {
    "sql": "sql",
    "getpwent": "getpwent",
    "shadow": "shadow",
    "pam": "pam",
    "sasldb": "sasldb",
    "ldap": "ldap",
    "rimap": "rimap",
    "httpform": "httpform",
    "kerberos5": "kerberos5",
}

# an extra that does not come with [all] (it builds from source)
EXTRAS = {"ldap": "apt-get install libldap-dev libsasl2-dev gcc && "
                  "pip install 'saslauthpy[ldap]'"}


def _module(name: str):
    key = name.lower()
    if key not in MODULES:
        known = ", ".join(sorted(MODULES))
        raise ConfigError(f"unknown mechanism {name!r}: choose one of {known}")
    try:
        return importlib.import_module(f"{__name__}.{MODULES[key]}")
    except ImportError as exc:
        extra = EXTRAS.get(key, "pip install 'saslauthpy[all]'")
        raise ConfigError(
            f"mechanism {name!r} needs a module that is not installed ({exc.name or exc}): "
            f"{extra}"
        ) from exc


def backend_class(name: str) -> type:
    """The ``Backend`` class of mechanism ``name`` (a ``base.Backend`` subclass)."""
    return _module(name).Backend


def options_class(name: str) -> type:
    """The dataclass of mechanism ``name``'s TOML table (``[name]``)."""
    return backend_class(name).Options


def store_class(name: str) -> type:
    """The ``Store`` class of mechanism ``name`` (a ``base.Store`` subclass)."""
    mod = _module(name)
    if not hasattr(mod, "Store"):
        raise ConfigError(f"mechanism {name!r} keeps no users that saslauthpy-admin can manage")
    return mod.Store

"""``-a ldap``: saslauthd's LDAP mechanism (``saslauthd.conf`` keys, bind / custom /
fastbind, groups, TLS, failover)."""

from .backend import Backend

__all__ = ["Backend"]

"""What the throttle counts against: user identities, client addresses, password digests.

A user key is the *identity* of the login for one backend (``Backend.identity()``:
``root``, ``root@x1`` and ``ROOT`` reach one account when the backend ignores the realm or
the case, so they make one key).  An address key is the client's IPv4 address or its
IPv6 ``/ipv6_prefix`` network.  A wrong password is remembered as a short digest of its
fingerprint (an HMAC under the throttle's key) mixed with the entry's key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import ConfigError

if TYPE_CHECKING:
    from .protocol import Request

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 8  # what an entry keeps of a wrong password's fingerprint

Identity = tuple[str, str]  # (login, realm) of one account, as a backend canonicalises it


def user_key(identity: Identity) -> str:
    return f"u:{identity[0]}\0{identity[1]}"


def client_ip(client_addr: str) -> str:
    """The address part of ``ip;port`` (``[v6];port`` and a bare address are accepted)."""
    ip = client_addr.split(";", 1)[0].strip()
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    return ip


class Keys:
    """The keys of a request under the ``[throttle]`` options."""

    def __init__(self, per_user: bool, per_address: bool, ipv6_prefix: int,
                 exempt: Sequence[str]):
        self.per_user = per_user
        self.per_address = per_address
        self.ipv6_prefix = ipv6_prefix
        self.exempt = [ipaddress.ip_network(n, strict=False) for n in exempt]

    def of(self, request: Request, identities: Sequence[Identity] | None = None) -> list[str]:
        """One key per identity (default: the request's own login and realm), and one for
        the client address."""
        keys = []
        if self.per_user:
            idents = identities if identities is not None else [(request.login, request.realm)]
            keys.extend(user_key(i) for i in idents)
        if self.per_address and request.client_addr:
            addr = self.address(request.client_addr)
            if addr:
                keys.append(addr)
        return keys

    def address(self, client_addr: str) -> str:
        try:
            ip = ipaddress.ip_address(client_ip(client_addr))
        except ValueError:
            return ""  # not an address we can group: no address penalty
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.exempt):
            return ""
        if isinstance(ip, ipaddress.IPv6Address):
            net = ipaddress.ip_network(f"{ip}/{self.ipv6_prefix}", strict=False)
            return f"a:{net}"
        return f"a:{ip}"


def digest(fingerprint: bytes, key: str, identities: Sequence[Identity]) -> str:
    """What the entry ``key`` keeps of a wrong password.  An address key sees many users:
    the same password for another user is a new guess, so its digest includes the
    identities (every spelling of one account gives the same ones)."""
    h = hashlib.blake2b(fingerprint, digest_size=FINGERPRINT_BYTES)
    h.update(key.encode("utf-8", "surrogateescape"))
    if not key.startswith("u:"):
        for ident in identities:
            h.update(b"\0" + user_key(ident).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def exposed(url: str) -> bool:
    """True when ``url`` reaches Redis in clear over a network (not TLS, not this host)."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        return False  # rediss:// (TLS) or unix://
    host = parts.hostname or "localhost"
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: reached over the network


def read_key(path: str) -> bytes:
    """The fleet's fingerprint key from ``[throttle] fingerprint_key_file``."""
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
            mode = os.fstat(f.fileno()).st_mode
    except OSError as exc:
        raise ConfigError(f"[throttle] fingerprint_key_file: cannot read {path}: "
                          f"{exc.strerror}") from None
    if len(key) < 16:
        raise ConfigError(f"[throttle] fingerprint_key_file: {path} holds {len(key)} bytes; "
                          "put at least 16 random ones there (head -c 32 /dev/urandom)")
    if mode & 0o004:
        log.warning("throttle: %s is readable by every user; chmod 0600 it", path)
    return key

"""What the backends that ask a server over TCP (rimap, httpform) share: checking a host
name, the TLS client context, and a short description of a network error for the audit
log and the one warning line."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl

from ..errors import ConfigError

_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


def is_host(text: str) -> bool:
    """A DNS name or an IPv4/IPv6 address literal (without brackets)."""
    if _HOSTNAME.fullmatch(text):
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def tls_context(ca_file: str, where: str) -> ssl.SSLContext:
    """A client context that checks the server's certificate and name, against ``ca_file``
    or, when it is empty, the system's CA store."""
    if ca_file and not os.access(ca_file, os.R_OK):
        raise ConfigError(f"{where}ca_file: {ca_file} is missing or not readable by uid "
                          f"{os.getuid()}")
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except ssl.SSLError as exc:
        raise ConfigError(f"{where}ca_file: {ca_file} holds no usable PEM certificate ({exc})")


def describe(exc: BaseException) -> str:
    """One short line for a network error (never any request data)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

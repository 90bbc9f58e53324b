"""``-a kerberos5``: saslauthd's Kerberos 5 mechanism (initial credentials from the KDC,
verified against the host's keytab), on MIT libkrb5 through ctypes."""

from .backend import Backend

__all__ = ["Backend"]

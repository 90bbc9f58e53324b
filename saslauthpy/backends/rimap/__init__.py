"""``-a rimap``: saslauthd's remote IMAP mechanism (``-O host[/port]``, LOGIN, STARTTLS or
imaps)."""

from .backend import Backend

__all__ = ["Backend"]

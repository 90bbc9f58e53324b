"""``-a pam``: PAM stacks, run in recyclable worker processes."""

from .backend import Backend

__all__ = ["Backend"]

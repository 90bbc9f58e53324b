"""``-a httpform``: saslauthd's web form mechanism (``httpform_*`` keys, ``%u %p %r %s``
tokens), over http or https."""

from .backend import Backend

__all__ = ["Backend"]

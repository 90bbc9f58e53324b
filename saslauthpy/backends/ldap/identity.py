"""The account an LDAP login reaches, for the throttle and flushes (``Backend.identity``).

Which parts of a request reach the directory is decided by the tokens of ``ldap_filter``
and ``ldap_search_base`` (see ``settings.expand``): with the default ``(uid=%u)`` the
realm is never used; ``%U`` uses the login up to its ``@`` and ``%d`` the part after it;
``%r``/``%R`` (and ``%1``-``%9`` for a login without a domain) use the realm, which
defaults to ``ldap_default_realm``.  A SASL fast bind uses ``login@realm``.  The
directory compares these values with its matching rules, for ``uid``, ``mail`` and
``dc`` caseIgnoreMatch: case and blanks at the ends (runs of blanks inside count as one)
make no difference, so the identity is folded (``base.fold``).
"""

from __future__ import annotations

import functools

from ..base import fold
from .settings import Settings


def identity(s: Settings, login: str, realm: str) -> tuple[str, str]:
    realm = realm or s.default_realm
    if s.auth_method == "fastbind" and s.use_sasl:
        return fold(login), fold(realm) if "@" not in login else ""
    whole, user_part, domain_part, labels, realm_token = _tokens(s.filter + s.search_base)
    user, at, domain = login.partition("@")
    if whole:
        who = login
    else:
        who = user if user_part else ""
        if at and (domain_part or labels):
            who += "@" + domain
    uses_realm = realm_token or (labels and not (at and domain))
    return fold(who), fold(realm) if uses_realm else ""


@functools.lru_cache(maxsize=16)
def _tokens(templates: str) -> tuple[bool, bool, bool, bool, bool]:
    """Which tokens the templates use (asked on every request: worked out once):
    %u, %U, %d, any of %1-%9, %r or %R."""
    return ("%u" in templates, "%U" in templates, "%d" in templates,
            any(f"%{n}" in templates for n in "123456789"),
            "%r" in templates or "%R" in templates)

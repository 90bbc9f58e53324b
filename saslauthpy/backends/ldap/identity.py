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

from ..base import fold
from .settings import Settings


def identity(s: Settings, login: str, realm: str) -> tuple[str, str]:
    realm = realm or s.default_realm
    if s.auth_method == "fastbind" and s.use_sasl:
        return fold(login), fold(realm) if "@" not in login else ""
    templates = s.filter + s.search_base
    labels = any(f"%{n}" in templates for n in "123456789")
    user, at, domain = login.partition("@")
    if "%u" in templates:
        who = login
    else:
        who = user if "%U" in templates else ""
        if at and ("%d" in templates or labels):
            who += "@" + domain
    uses_realm = "%r" in templates or "%R" in templates or (labels and not (at and domain))
    return fold(who), fold(realm) if uses_realm else ""

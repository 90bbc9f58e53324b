"""``ldap_auth_method: custom``'s own check: the password attribute the search fetched,
compared here with ``passwords`` (every scheme ``{SSHA}``, ``{CRYPT}``, ``{ARGON2}`` ...;
a value without a {SCHEME} is cleartext, as saslauthd compares it).

A login with no hash to compare (no entry, several, none in the attribute) checks a
decoy of the costly hashes seen so far (decoy.py), so that it takes as long as a wrong
password and cannot be told apart by timing.  A directory of salted digests needs none:
they cost microseconds, and no decoy is made until a costly hash was seen.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from ... import passwords
from ...decoy import Decoy
from .. import base
from ..base import FAIL, OK, Answer

log = logging.getLogger("saslauthpy.ldap")

# one hash round: cheap enough to check on the event loop (the others go to a thread)
CHEAP_SCHEMES = frozenset({"", "{PLAIN}", "{CLEARTEXT}", "{MD5}", "{SMD5}", "{SHA}", "{SSHA}",
                           "{SHA256}", "{SSHA256}", "{SHA512}", "{SSHA512}"})


class Compare:
    def __init__(self, password_attr: str, threads: Executor):
        self.password_attr = password_attr
        self.threads = threads  # where costly hashes are checked off the event loop
        self.decoy = Decoy(fallback=False)

    async def check(self, dn: str, attributes: dict, password: bytes, deadline: float,
                    here: bool = False) -> Answer:
        """OK when ``password`` matches one of the entry's values.  ``here``: in this
        thread whatever the scheme costs (the fast lane's thread, which stops checking
        inline while checks cost much)."""
        wanted = self.password_attr.lower()
        values = [v for k, vs in attributes.items() if k.lower() == wanted for v in vs]
        checked = False
        for raw in values:
            stored = raw.decode("utf-8", "surrogateescape")
            try:
                if here:
                    ok = self._verify(password, stored)
                elif passwords.scheme_of(stored).split(".")[0].upper() in CHEAP_SCHEMES:
                    ok = passwords.verify(password, stored, default_scheme="PLAIN")
                else:  # crypt, bcrypt, argon2, PBKDF2: not on the event loop
                    async with asyncio.timeout_at(deadline):
                        ok = await asyncio.get_running_loop().run_in_executor(
                            self.threads, self._verify, password, stored)
                if ok:
                    return OK
                checked = True
            except passwords.UnknownScheme as exc:
                log.warning("ldap: %s: %s in %s", dn, exc, self.password_attr)
        if not checked:
            await self.waste(password, deadline, here)
        if not values:
            return Answer(base.Result.FAIL, f"no {self.password_attr} to compare with")
        return FAIL

    async def waste(self, password: bytes, deadline: float, here: bool) -> None:
        """Take as long as a wrong password would: check the decoy (nothing until a
        costly hash was seen)."""
        if not self.decoy.ready:
            return
        if here:
            self.decoy.waste(password)
            return
        async with asyncio.timeout_at(deadline):
            await asyncio.get_running_loop().run_in_executor(self.threads, self.decoy.waste,
                                                             password)

    def _verify(self, password: bytes, stored: str) -> bool:
        """``passwords.verify``, and the decoy learns what a real check of this kind costs
        (in a thread: learning a new kind hashes once)."""
        ok = passwords.verify(password, stored, default_scheme="PLAIN")
        self.decoy.learn(stored)
        return ok

"""``-a ldap``: check logins against an LDAP directory, configured like saslauthd.

Settings (every saslauthd.conf key lak.c reads, the ``[ldap]`` TOML table, tokens) are in
``settings``; opening connections (servers, failover, TLS, binds) in ``connection``; the
connections on the event loop in ``links``, those of the fast lane's threads in ``now``;
SASL in ``sasl``; ``custom``'s password check in ``compare``.  This module is the backend
itself.  Three methods, as in saslauthd, each with the fewest operations it needs:

- ``bind``: one search on a service link (bound once as ``ldap_bind_dn``, or anonymous)
  for the user's DN, then one bind as the user on a user link;
- ``custom``: one search fetching ``ldap_password_attr``, checked with ``passwords``;
- ``fastbind``: expand ``ldap_filter`` into the user's DN and bind with it, nothing else
  (with ``ldap_use_sasl``: a SASL bind with ``ldap_mech`` as ``login@realm``).

The optional group check (``ldap_group_dn`` / ``ldap_group_filter``) always runs on a
service link (cyrus-sasl#427).  Searches, compares and simple binds are libldap's
asynchronous calls multiplexed on the event loop (``authenticate`` is a coroutine); SASL
binds and opening connections block, so they run in the backend's own threads.  Every
login is a real bind or a real password check: nothing is remembered between requests
(cyrus-sasl#550).  A user bind never goes out with an empty DN (that would be an
anonymous bind, which servers accept).  An unknown user takes about as long as a real
user's wrong password: ``custom`` checks a decoy hash, ``bind`` and ``fastbind`` wait out
what a real user's bind costs the directory (``_timed_bind``).  See docs/ldap.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import ldap
from ldap.ldapobject import LDAPObject

from ...errors import ConfigError
from ...protocol import Request
from .. import base
from ..base import OK, Answer, run_now, tempfail
from .compare import Compare
from .connection import (
    TEMPORARY_BIND_CODES,
    TEMPORARY_CODES,
    Directory,
    Identity,
    ServiceBindRefused,
    Unavailable,
    bind,
    close,
    code_of,
    describe,
    host_of,
    sasl_identity,
    service_identity,
)
from .identity import identity
from .links import Links
from .now import NowLinks
from .sasl import Unsendable
from .settings import Options, escape_dn_value, escape_filter_value, expand, load_settings

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("saslauthpy.ldap")
DECOY_RDN = "cn=saslauthpy-decoy"  # the DN bind's decoy binds as, under the search base
BIND_SAMPLES = 15  # a real bind's cost is the median of the last ones' times (robust to
# the odd slow one, such as a bind that had to open its connection first)
SHORTEST_WAIT = 0.0005  # seconds: a shorter wait is left out: the event loop sleeps in
# whole milliseconds, and would make it nearer a millisecond than the difference it hides


class NotFound(Exception):
    """No one entry for the login under ``base`` (the search base the filter ran under)."""

    def __init__(self, reason: str, base: str):
        super().__init__(reason)
        self.reason, self.base = reason, base


class Refused(Exception):
    """The user's credentials were refused (a plain NO), with the reason."""


class Backend(base.Backend):
    name = "ldap"
    Options = Options
    waits = True

    def __init__(self, config: Config, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.s = load_settings(config, self.options)
        self.directory = Directory(self.s)
        self.service_identity = service_identity(self.s)
        self.threads: Executor = ThreadPoolExecutor(
            max_workers=self.s.pool_size + 1, thread_name_prefix="saslauthpy-ldap")
        self.links: Links | None = None
        # fastbind alone never uses the service identity (nor does lak.c); one that is
        # configured all the same is still checked at start
        self.needs_service = self.s.auth_method != "fastbind" or self.s.group_check
        self.check_service = self.needs_service or bool(self.s.bind_dn or self.s.sasl_id)
        self.started: tuple[LDAPObject, int] | None = None  # the connection open() made
        # idle connections (and their server) for the blocking SASL fastbinds
        self.sasl_users: list[tuple[LDAPObject, int]] = []
        # The fast lane's threads may check here (now.py); not SASL binds (several trips)
        self.inline = not self.s.use_sasl
        self.now = threading.local()
        self.now_links: list[NowLinks] = []
        self.compare = Compare(self.s.password_attr, self.threads)  # custom's own check
        self.decoy_password = secrets.token_urlsafe(12).encode()  # bind's decoy (_decoy_bind)
        # seconds the last real users' binds took (_timed_bind)
        self.bind_times: deque[float] = deque(maxlen=BIND_SAMPLES)

    # -- lifecycle

    def open(self) -> None:
        deadline = time.monotonic() + self.s.timeout
        try:
            who = self.service_identity if self.check_service else Identity()
            self.started = self.directory.connect(who, deadline,
                                                  for_users=not self.check_service)
        except ServiceBindRefused as exc:
            who = "SASL identity ldap_id" if self.s.use_sasl else "ldap_bind_dn"
            raise ConfigError(f"{self.s.source}: {exc}: check {who} and ldap_password")
        except Unsendable as exc:
            raise ConfigError(f"{self.s.source}: ldap_password: {exc}")
        except Unavailable as exc:
            text = str(exc)
            uri = self.directory.untrusted()
            if uri:
                raise ConfigError(f"{self.s.source}: {uri}: TLS certificate not trusted "
                                  "(it answers when not verified): check "
                                  "ldap_tls_cacert_file/ldap_tls_cacert_dir and the server "
                                  "names in ldap_servers")
            log.error("ldap: %s; logins get a temporary failure until a server answers", text)

    def close(self) -> None:
        super().close()
        links, self.links = self.links, None
        if links is not None:
            if links.loop.is_running() and not _in_loop(links.loop):
                links.loop.call_soon_threadsafe(links.close)
            else:
                links.close()
        started, self.started = self.started, None
        if started is not None:
            close(started[0])
        while self.sasl_users:
            close(self.sasl_users.pop()[0])
        while self.now_links:
            self.now_links.pop().close()
        self.threads.shutdown(wait=False)

    def _links(self) -> Links:
        loop = asyncio.get_running_loop()
        if self.links is None or self.links.loop is not loop:
            if self.links is not None:  # another loop (a test's): start afresh
                self.links.close()
            self.links = Links(loop, self.directory, self.service_identity,
                               self.s.pool_size, self.threads)
            if self.started is not None and self.needs_service:
                self.links.adopt(self.links.service, *self.started)
            elif self.started is not None and not self.s.use_sasl:
                self.links.adopt(self.links.user, *self.started)
            elif self.started is not None:
                self.sasl_users.append(self.started)
            self.started = None
        return self.links

    # -- one login

    def identity(self, login: str, realm: str) -> tuple[str, str]:
        return identity(self.s, login, realm)

    async def authenticate(self, request: Request) -> Answer:
        refused = _refused(request)
        if refused is not None:
            return refused
        links = self._links()
        # Every wait below is bounded by this deadline: the LDAP operations by the links'
        # sweeper (no timer per request), the rest (a connection being opened, a free
        # user connection, a costly hash, a SASL bind) by their own timeouts.
        deadline = links.loop.time() + self.s.timeout
        return await self._answer(self._check(links, request, deadline), request.login)

    def check(self, request: Request) -> Answer:
        """The same check in the fast lane's thread (``inline``), on this thread's own
        links; raises ``NotNow`` when it cannot end at once."""
        refused = _refused(request)
        if refused is not None:
            return refused
        links = getattr(self.now, "links", None)
        if links is None:
            links = self.now.links = NowLinks(self.directory, self.service_identity)
            self.now_links.append(links)
        deadline = time.monotonic() + self.s.timeout
        return run_now(self._answer(self._check(links, request, deadline), request.login))

    async def _answer(self, check, login: str) -> Answer:
        """The answer of ``check`` (``_check``'s coroutine), its errors told apart."""
        try:
            return await check
        except TimeoutError:
            return tempfail("the LDAP server did not answer within ldap_timeout")
        except NotFound as exc:
            return Answer(base.Result.UNKNOWN, exc.reason)
        except (Refused, Unsendable) as exc:
            return Answer(base.Result.FAIL, str(exc))
        except Unavailable as exc:
            return tempfail(str(exc))
        except ServiceBindRefused as exc:
            log.error("ldap: %s", exc)
            return tempfail(str(exc))
        except Exception:  # noqa: BLE001 - a user's input must never escape authenticate()
            log.exception("ldap: unexpected error checking %r", login)
            return tempfail("internal error in the ldap backend")

    async def _check(self, links: Links | NowLinks, request: Request,
                     deadline: float) -> Answer:
        login, password, service = request.login, request.password, request.service
        realm = request.realm or self.s.default_realm
        method = self.s.auth_method
        if method == "fastbind" and self.s.use_sasl:
            dn = await self._sasl_fastbind(login, password, realm, deadline)
        elif method == "fastbind":
            dn = expand(self.s.filter, login, service, realm, "", escape_dn_value)
            await self._timed_bind(links, dn, password, deadline, found=False)
        else:
            attrs = [self.s.password_attr] if method == "custom" else ["1.1"]
            try:
                dn, attributes = await self._find_user(links, login, service, realm, attrs,
                                                       deadline)
            except NotFound as exc:  # as long as a wrong password takes
                if method == "custom":
                    await self.compare.waste(password, deadline, links.blocking)
                else:
                    await self._decoy_bind(links, exc.base, deadline)
                raise
            if method == "custom":
                answer = await self.compare.check(dn, attributes, password, deadline,
                                                  links.blocking)
                if answer is not OK:
                    return answer
            else:
                await self._timed_bind(links, dn, password, deadline, found=True)
        if self.s.group_check and not await self._in_group(links, login, service, realm, dn,
                                                           deadline):
            return Answer(base.Result.FAIL, "not a member of the required group")
        return OK

    # -- the operations

    async def _search(self, links: Links, base_dn: str, scope: int, filt: str,
                      attrs: list[str], size_limit: int, deadline: float) -> list[Any]:
        """Entries as (dn, attributes); sizeLimitExceeded raises ``ldap.SIZELIMIT_EXCEEDED``,
        noSuchObject (the base does not exist) gives none."""
        s = self.s
        try:
            _, entries = await links.call(links.service, "search_ext", (
                base_dn, scope, filt, attrs, 0, None, None, s.time_limit or -1, size_limit),
                deadline)
        except ldap.NO_SUCH_OBJECT:
            return []
        except (ldap.SIZELIMIT_EXCEEDED, ldap.TIMEOUT):
            raise
        except ldap.LDAPError as exc:
            if code_of(exc) in TEMPORARY_CODES:
                raise Unavailable(f"search failed: {describe(exc)}")
            raise Unavailable(f"search refused: {describe(exc)}")
        return [e for e in entries if e[0] is not None]  # drop search references

    async def _find_user(self, links: Links, login: str, service: str, realm: str,
                         attrs: list[str], deadline: float) -> tuple[str, dict]:
        s = self.s
        filt = _filter(expand(s.filter, login, service, realm, "", escape_filter_value))
        base_dn = expand(s.search_base, login, service, realm, "", escape_dn_value)
        try:
            entries = await self._search(links, base_dn, s.scope, filt, attrs, s.size_limit,
                                         deadline)
        except ldap.SIZELIMIT_EXCEEDED:  # more entries than the limit, whatever it is
            entries = [("", {})] * 2
        if not entries:
            raise NotFound("unknown user", base_dn)
        if len(entries) > 1:
            log.warning("ldap: several entries match %s under %r: refusing an ambiguous "
                        "login", filt, base_dn)
            raise NotFound("several directory entries match", base_dn)
        return entries[0]

    async def _user_bind(self, links: Links, dn: str, password: bytes,
                         deadline: float) -> None:
        """Bind as the user on a user link; ``Refused`` if the server says no."""
        if not dn.strip():  # an empty DN is an anonymous bind: never a login
            raise Refused("the user's DN is empty")
        try:
            await links.call(links.user, "simple_bind", (dn, password, None, None), deadline)
        except ldap.LDAPError as exc:
            if code_of(exc) in TEMPORARY_BIND_CODES:
                raise Unavailable(f"bind failed: {describe(exc)}")
            raise Refused(describe(exc))  # invalidCredentials, invalidDNSyntax ...

    async def _decoy_bind(self, links: Links, base_dn: str, deadline: float) -> None:
        """``bind``'s answer to a login with no DN to bind as, made as slow as a wrong
        password's: a bind the directory refuses, as ``DECOY_RDN`` (no such entry) under
        the search base, with a password of our own (the user's goes nowhere)."""
        dn = f"{DECOY_RDN},{base_dn}" if base_dn.strip() else DECOY_RDN
        began = time.monotonic()
        try:
            await self._user_bind(links, dn, self.decoy_password, deadline)
        except (Refused, Unavailable, TimeoutError):
            pass  # refused, as it should be; else the answer (no such user) stands
        await self._as_slow_as_a_bind(links, began, deadline)

    async def _timed_bind(self, links: Links, dn: str, password: bytes, deadline: float,
                          found: bool) -> None:
        """``_user_bind``, timed so that no entry can be told from a real one: a bind to
        an entry that exists (``found`` by the search, or accepted) teaches what the
        directory's check of a password costs (``bind_times``: a {CRYPT} hash costs it
        milliseconds, a DN that does not exist nothing); a refused bind to an entry that
        may not exist (fastbind) takes at least that long."""
        began = time.monotonic()
        try:
            await self._user_bind(links, dn, password, deadline)
        except Refused:
            if found:
                self.bind_times.append(time.monotonic() - began)
            else:
                await self._as_slow_as_a_bind(links, began, deadline)
            raise
        self.bind_times.append(time.monotonic() - began)

    async def _as_slow_as_a_bind(self, links: Links, began: float, deadline: float) -> None:
        """Wait until a real user's bind begun at ``began`` would have ended (the median
        of ``bind_times``), within ``deadline``: in this thread on blocking links, else on
        the event loop."""
        times = sorted(self.bind_times)  # a copy: other threads may add to it meanwhile
        if not times:
            return
        rest = times[len(times) // 2] - (time.monotonic() - began)
        if rest < SHORTEST_WAIT:
            return
        if links.blocking:
            time.sleep(min(rest, max(0.0, deadline - time.monotonic())))
        else:
            await asyncio.sleep(min(rest, max(0.0, deadline - links.loop.time())))

    async def _sasl_fastbind(self, login: str, password: bytes, realm: str,
                             deadline: float) -> str:
        """lak.c's SASL fastbind: the SASL name is login@realm when the login has no realm
        of its own.  Blocking (several round trips), so in a thread.  Returns the DN from
        *Who am I?* when a group check needs it."""
        user = login if ("@" in login or not realm) else f"{login}@{realm}"
        who = Identity(sasl=sasl_identity(self.s, user, password, ""))
        loop = asyncio.get_running_loop()
        until = time.monotonic() + max(0.0, deadline - loop.time())
        async with asyncio.timeout_at(deadline):
            return await loop.run_in_executor(self.threads, self._sasl_bind, who, until)

    def _sasl_bind(self, who: Identity, until: float) -> str:
        for attempt in (1, 2):
            idle = None
            if attempt == 1:
                try:
                    idle = self.sasl_users.pop()
                except IndexError:  # none idle (another thread may have taken the last)
                    pass
            conn, server = idle or self.directory.connect(Identity(), until, for_users=True)
            keep = False
            try:
                bind(conn, who, host_of(self.s.servers[server]))
                keep = True
                if not self.s.group_check:
                    return ""
                whoami = conn.whoami_s() or ""
                return whoami[3:] if whoami.startswith("dn:") else ""
            except ldap.LDAPError as exc:
                code = code_of(exc)
                if code is not None and code >= 0 and code not in TEMPORARY_BIND_CODES:
                    keep = True
                    raise Refused(describe(exc))
                if attempt == 2 or time.monotonic() >= until:
                    raise Unavailable(f"SASL bind failed: {describe(exc)}")
            finally:
                # A SASL bind leaves nothing behind on the connection (the exchange is
                # ours), so a healthy one is reused.
                if keep:
                    self.sasl_users.append((conn, server))
                else:
                    close(conn)
        raise AssertionError("unreachable")

    async def _in_group(self, links: Links, login: str, service: str, realm: str, dn: str,
                        deadline: float) -> bool:
        s = self.s
        if not dn:
            return False
        if s.group_match_method == "attr":
            group_dn = expand(s.group_dn, login, service, realm, "", escape_dn_value)
            try:
                await links.call(links.service, "compare_ext", (
                    group_dn, s.group_attr, dn.encode("utf-8"), None, None), deadline)
            except ldap.COMPARE_TRUE:
                return True
            except ldap.LDAPError as exc:
                if code_of(exc) in TEMPORARY_CODES:
                    raise Unavailable(f"group check failed: {describe(exc)}")
                return False  # compareFalse, noSuchObject, noSuchAttribute ...
            return False
        filt = _filter(expand(s.group_filter, login, service, realm, dn, escape_filter_value))
        base_dn = expand(s.group_search_base, login, service, realm, dn, escape_dn_value)
        try:
            return bool(await self._search(links, base_dn, s.group_scope, filt, ["1.1"], 1,
                                           deadline))
        except ldap.SIZELIMIT_EXCEEDED:  # more than one group matches
            return True


def _refused(request: Request) -> Answer | None:
    """The answer to a request no directory is asked about, or None."""
    if not request.login:
        return base.UNKNOWN
    if not request.password:
        return Answer(base.Result.FAIL, "empty password")  # never an unauthenticated bind
    if b"\0" in request.password:
        return Answer(base.Result.FAIL, "password contains a NUL byte")
    try:
        request.login.encode("utf-8")
    except UnicodeEncodeError:
        return Answer(base.Result.UNKNOWN, "login is not valid UTF-8")
    return None


def _filter(text: str) -> str:
    return text if text.lstrip().startswith("(") else f"({text})"


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

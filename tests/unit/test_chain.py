"""The backend chain (``-a sql,pam``): the first OK or wrong password wins, "unknown user"
lets the next backend try, a temporary failure is remembered and answered when nobody
knows the user.  The backends are stubs that answer a fixed result and count their calls:
the chain logic is what is under test here (the real backends have their own tests)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from saslauthpy.authenticator import REPLY_FAIL, REPLY_OK, REPLY_TEMPFAIL, Authenticator, Peer
from saslauthpy.backends.base import FAIL, OK, UNKNOWN, Answer, Backend, Result, tempfail
from saslauthpy.cache import CredentialCache
from saslauthpy.config import Config, ServerOptions, ThrottleOptions
from saslauthpy.protocol import Request, format_reply
from saslauthpy.throttle import Throttle

ANSWERS = {"ok": OK, "fail": FAIL, "unknown": UNKNOWN, "tempfail": tempfail("db down")}


class Stub(Backend):
    """Answers ``answer`` to everyone (or raises ``raises``) and counts the requests."""

    def __init__(self, name: str, answer: Answer | None = None, raises: Exception | None = None):
        super().__init__(Config(), None)
        self.name, self.answer, self.raises = name, answer, raises
        self.asked: list[str] = []

    async def authenticate(self, request: Request) -> Answer:
        self.asked.append(request.login)
        if self.raises is not None:
            raise self.raises
        return self.answer


def chain(*kinds: str, **config) -> tuple[Authenticator, list[Stub]]:
    stubs = [Stub(f"b{i}-{kind}", ANSWERS[kind]) for i, kind in enumerate(kinds)]
    return Authenticator(Config(**config), stubs), stubs


def ask(auth: Authenticator, login: str = "alice", password: bytes = b"pw") -> tuple[bytes, list]:
    seen = []
    auth.observers.append(seen.append)
    reply = asyncio.run(auth.answer(Request(login, password, "smtp"), Peer(), time.monotonic()))
    auth.observers.remove(seen.append)
    return reply, seen


def expected(kinds: tuple[str, ...]) -> tuple[Result, int]:
    """The rule, stated independently of the code: (final result, backends asked)."""
    for i, kind in enumerate(kinds):
        if kind in ("ok", "fail"):
            return Result(kind), i + 1
    return (Result.TEMPFAIL if "tempfail" in kinds else Result.UNKNOWN), len(kinds)


REPLIES = {Result.OK: REPLY_OK, Result.FAIL: REPLY_FAIL, Result.UNKNOWN: REPLY_FAIL,
           Result.TEMPFAIL: REPLY_TEMPFAIL}


@pytest.mark.parametrize("kinds", [
    kinds for n in (1, 2, 3) for kinds in itertools.product(ANSWERS, repeat=n)
], ids="-".join)
def test_every_order_of_answers(kinds):
    auth, stubs = chain(*kinds)
    reply, seen = ask(auth)
    result, asked = expected(kinds)
    assert reply == REPLIES[result]
    assert [len(s.asked) for s in stubs] == [1] * asked + [0] * (len(kinds) - asked)
    assert seen[0].result == result.value


def test_the_deciding_backend_is_the_one_audited():
    auth, stubs = chain("unknown", "fail", "ok")
    _, seen = ask(auth)
    assert (seen[0].backend, seen[0].reason) == ("b1-fail", "wrong password")


def test_the_first_tempfail_is_the_answer_when_nobody_knows_the_user():
    auth = Authenticator(Config(), [Stub("a", tempfail("first down")), Stub("b", UNKNOWN),
                                    Stub("c", tempfail("second down"))])
    reply, seen = ask(auth)
    assert reply == REPLY_TEMPFAIL
    assert (seen[0].backend, seen[0].reason) == ("a", "first down")


def test_a_tempfail_is_forgotten_once_a_later_backend_decides():
    auth, _ = chain("tempfail", "ok")
    assert ask(auth)[0] == REPLY_OK
    auth, _ = chain("tempfail", "fail")
    assert ask(auth)[0] == REPLY_FAIL


def test_a_backend_that_raises_is_a_tempfail_and_the_chain_goes_on():
    broken = Stub("broken", raises=RuntimeError("bug"))
    auth = Authenticator(Config(), [broken, Stub("sql", OK)])
    assert ask(auth)[0] == REPLY_OK
    auth = Authenticator(Config(), [broken, Stub("sql", UNKNOWN)])
    reply, seen = ask(auth)
    assert reply == REPLY_TEMPFAIL and seen[0].reason == "internal error: RuntimeError"


def test_an_empty_chain_knows_nobody():
    auth = Authenticator(Config(), [])
    reply, seen = ask(auth)
    assert reply == REPLY_FAIL and seen[0].result == "unknown"


def test_revealed_reasons_come_from_the_deciding_backend():
    auth = Authenticator(Config(server=ServerOptions(reveal_reasons=True)),
                         [Stub("a", UNKNOWN), Stub("b", Answer(Result.FAIL, "Password expired"))])
    assert ask(auth)[0] == format_reply("NO Password expired")


def test_the_cache_keeps_the_chain_result_and_skips_the_chain():
    cache = CredentialCache(100, 60)
    first, second = Stub("a", UNKNOWN), Stub("b", OK)
    auth = Authenticator(Config(), [first, second], cache)
    assert ask(auth)[0] == REPLY_OK
    req = Request("alice", b"pw", "smtp")
    assert auth.answer_from_cache(req, Peer(), time.monotonic()) == REPLY_OK
    assert auth.answer_from_cache(Request("alice", b"other", "smtp"), Peer(),
                                  time.monotonic()) is None
    assert (len(first.asked), len(second.asked)) == (1, 1)


def test_a_tempfail_is_never_cached():
    cache = CredentialCache(100, 60)
    auth = Authenticator(Config(), [Stub("a", tempfail("down"))], cache)
    assert ask(auth)[0] == REPLY_TEMPFAIL
    req = Request("alice", b"pw", "smtp")
    assert auth.answer_from_cache(req, Peer(), time.monotonic()) is None


def throttled(*stubs: Stub) -> Authenticator:
    config = Config(throttle=ThrottleOptions(base_delay=0.01, max_delay=0.01, decay=600))
    return Authenticator(config, list(stubs), None, Throttle(config))


@pytest.mark.parametrize("kinds, penalised", [
    (("unknown", "fail"), True), (("unknown", "unknown"), True), (("tempfail", "unknown"), False),
    (("unknown", "ok"), False), (("tempfail",), False),
])
def test_what_the_chain_answers_is_what_the_throttle_counts(kinds, penalised):
    auth = throttled(*(Stub(k, ANSWERS[k]) for k in kinds))
    ask(auth)
    assert (auth.throttle.penalty(Request("alice", b"", "smtp")) > 0) is penalised

"""Our listener's replies next to a real Dovecot auth server's, for the same conversations.

Dovecot 2.3 (Debian's dovecot-core) runs as an auth server only, with a passwd-file
holding the same users.  Both sides run without penalties (``no-penalty`` for Dovecot,
``[throttle] enabled = false`` for us) and without a failure delay, so each step's
replies come at once.  Every conversation must get the same replies, except the few
where we deliberately refuse with a FAIL where Dovecot closes the connection.
"""

from __future__ import annotations

import pytest
from dovecot_auth import EOF_MARK, AuthClient, ReferenceDovecot, auth_line, b64, plain

pytestmark = pytest.mark.dovecot  # the reference is a real Dovecot auth process

HELLO = b"VERSION\t1\t0\nCPID\t4242\n"
USERS = {"alice": "secret"}


def A(req_id: int, mech: str = "PLAIN", **kw) -> bytes:
    return auth_line(req_id, mech, no_penalty="", **kw)


def C(req_id: int, data: bytes) -> bytes:
    return b"CONT\t%d\t%s\n" % (req_id, b64(data))


# name: [(what the client sends, how many lines it waits for; -1 = until the server closes)]
CONVERSATIONS = {
    "plain ok": [(HELLO + A(1, resp=plain("alice", "secret"), nologin="", lip="127.0.0.1",
                            rip="127.0.0.2", secured=""), 1)],
    "plain wrong": [(HELLO + A(1, resp=plain("alice", "wrong"), rip="127.0.0.2"), 1)],
    "plain unknown user": [(HELLO + A(1, resp=plain("nobody", "x")), 1)],
    "plain, response in a CONT": [(HELLO + A(1), 1), (C(1, b"alice\0alice\0secret"), 1)],
    "plain, empty resp= from a 1.0 client": [(HELLO + A(1, raw_resp=b""), 1)],
    "plain, empty resp= from a 1.2 client": [
        (b"VERSION\t1\t2\nCPID\t1\n" + A(1, raw_resp=b""), 1)],
    "plain, resp==": [(HELLO + A(1, raw_resp=b"="), 1)],
    "plain, no NULs": [(HELLO + A(1, resp=b"alicesecret"), 1)],
    "plain, another authzid": [(HELLO + A(1, resp=b"bob\0alice\0secret"), 1)],
    "plain, empty password": [(HELLO + A(1, resp=b"\0alice\0"), 1)],
    "plain, lower-case mechanism": [(HELLO + A(1, "plain", resp=plain("alice", "secret")), 1)],
    "plain, CRLF lines": [(HELLO.replace(b"\n", b"\r\n")
                           + A(1, resp=plain("alice", "secret")).replace(b"\n", b"\r\n"), 1)],
    "plain, unpadded base64": [(HELLO + A(1, raw_resp=b64(b"\0alice\0secret1").rstrip(b"=")),
                                1)],
    "login": [(HELLO + A(1, "LOGIN"), 1), (C(1, b"alice"), 1), (C(1, b"secret"), 1)],
    "login, user name in the AUTH": [(HELLO + A(1, "LOGIN", resp=b"alice"), 1),
                                     (C(1, b"wrong"), 1)],
    "bad base64 first and in a CONT": [(HELLO + A(1, raw_resp=b"!!!!"), 1),
                                       (A(2, "LOGIN"), 1), (b"CONT\t2\t%%%\n", 1)],
    "CONT for no request": [(HELLO + b"CONT\t7\tYQ==\n", 1)],
    "CANCEL, then its CONT": [(HELLO + A(1, "LOGIN"), 1), (b"CANCEL\t1\n", 0),
                              (C(1, b"alice"), 1)],
    "pipelined requests": [(HELLO + A(1, resp=plain("alice", "secret")) + A(2, "LOGIN")
                            + A(3, resp=plain("alice", "nope")), 3)],
    "bad VERSION": [(b"VERSION\t2\t0\n", -1)],
    "no VERSION": [(b"HELLO\n", -1)],
    "AUTH before CPID": [(b"VERSION\t1\t0\n" + A(1, "LOGIN"), -1)],
    "CPID 0": [(b"VERSION\t1\t0\nCPID\t0\n", -1)],
    "unknown command": [(HELLO + b"HELLO\tworld\n", -1)],
    "duplicate id": [(HELLO + A(1, "LOGIN"), 1), (A(1, "LOGIN"), -1)],
    "id 0": [(HELLO + A(0, "LOGIN"), -1)],
    "parameter after resp": [(HELLO + b"AUTH\t1\tLOGIN\tservice=smtp\tresp=YQ==\tx\n", -1)],
    "line longer than the cap": [(HELLO + A(1, raw_resp=b"A" * 20000), -1)],
}

# Where we answer differently, on purpose: (Dovecot's replies, ours).
DELIBERATE = {
    # Dovecot closes the connection (and so loses the client's other requests); the
    # client was told the mechanisms, so this is its bug, but a FAIL is enough.
    "unsupported mechanism": ([[EOF_MARK]],
                              [[b"FAIL\t1\treason=Unsupported authentication mechanism"]]),
    "no service": ([[EOF_MARK]], [[b"FAIL\t1\treason=Missing service"]]),
}
DELIBERATE_CONVERSATIONS = {
    "unsupported mechanism": [(HELLO + A(1, "CRAM-MD5"), 1)],
    "no service": [(HELLO + b"AUTH\t1\tPLAIN\tno-penalty\tresp=" + b64(plain("alice", "x"))
                    + b"\n", 1)],
}


def talk(path, steps) -> list[list[bytes]]:
    with AuthClient(path, hello=False, timeout=10) as c:
        out = []
        for data, n in steps:
            c.send(data)
            got = c.lines(n, timeout=10) if n >= 0 else [c.line(10)]
            while n < 0 and got[-1] != EOF_MARK:
                got.append(c.line(10))
            out.append(sorted(got) if n > 1 else got)  # pipelined: any order
        return out


@pytest.fixture(scope="module")
def servers(base, dovecot_daemon):
    ref = ReferenceDovecot(base / "reference", USERS).start()
    ours = dovecot_daemon("compared", config={"throttle": {"enabled": False}}, users=USERS)
    yield ref, ours
    ref.stop()


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_same_replies_as_dovecot(servers, name):
    ref, ours = servers
    expected = talk(ref.socket, CONVERSATIONS[name])
    assert talk(ours.auth, CONVERSATIONS[name]) == expected, ref.log()[-2000:]


@pytest.mark.parametrize("name", list(DELIBERATE))
def test_deliberate_differences(servers, name):
    ref, ours = servers
    theirs, mine = DELIBERATE[name]
    assert talk(ref.socket, DELIBERATE_CONVERSATIONS[name]) == theirs
    assert talk(ours.auth, DELIBERATE_CONVERSATIONS[name]) == mine

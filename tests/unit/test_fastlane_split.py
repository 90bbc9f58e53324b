"""The fast lane's unrolled split (``counted``, then ``checked``) takes exactly the requests
the protocol parser takes whole (four or five fields, nothing after them), and hands
everything else over."""

import random

import pytest

from saslauthpy.fastlane import checked, counted
from saslauthpy.protocol import Incomplete, Malformed, encode_field, parse_request

LIMIT = 256


def split(data: bytes, limit: int) -> list[bytes] | None:
    """What the fast lane takes as a request it may answer: its fields, else None."""
    fields = counted(data)
    return fields if fields is not None and checked(fields, limit) else None


def expected(data: bytes) -> list[bytes] | None:
    """What the parser makes of ``data`` when it is one whole request and nothing else."""
    try:
        req = parse_request(data, LIMIT)
    except (Incomplete, Malformed):
        return None
    fields = [req.login.encode("utf-8", "surrogateescape"), req.password,
              req.service.encode("utf-8", "surrogateescape"),
              req.realm.encode("utf-8", "surrogateescape")]
    for whole in (fields, [*fields, req.client_addr.encode("utf-8", "surrogateescape")]):
        if b"".join(encode_field(f) for f in whole) == data:  # nothing more, nothing less
            return whole
    return None


def shapes(rng: random.Random):
    alphabet = [b"a", b"b", b"\0", b"\xff", b"@"]
    for _ in range(3000):
        count = rng.choice([0, 1, 3, 4, 4, 4, 5, 5, 6])
        fields = []
        for _ in range(count):
            size = rng.choice([1, 5, 5, 5, 12, 0, LIMIT, LIMIT + 1])
            fields.append(b"".join(rng.choice(alphabet) if rng.random() < 0.01 else b"x"
                                   for _ in range(size)))
        data = b"".join(len(f).to_bytes(2, "big") + f for f in fields)
        cut = rng.random()
        if cut < 0.2 and data:
            data = data[:rng.randrange(len(data))]  # cut short anywhere
        elif cut < 0.3:
            data += rng.choice([b"\0", b"\0\0", b"junk"])  # something after it
        yield data


@pytest.mark.parametrize("seed", range(4))
def test_split_agrees_with_the_protocol_parser(seed):
    for data in shapes(random.Random(seed)):
        assert split(data, LIMIT) == expected(data), data


def test_split_examples():
    req = b"\0\x05alice\0\x06secret\0\x04imap\0\0"
    assert split(req, LIMIT) == [b"alice", b"secret", b"imap", b""]
    assert split(req + b"\0\x09127.0.0.1", LIMIT)[4] == b"127.0.0.1"
    assert split(req[:-1], LIMIT) is None  # the realm's length cut short
    assert split(req + b"\0", LIMIT) is None  # a fifth length cut short
    assert split(b"\0\x05al\0ce\0\x06secret\0\x04imap\0\0", LIMIT) is None  # NUL in login
    assert split(b"\0\0\0\x06secret\0\x04imap\0\0", LIMIT) is None  # empty login
    assert split(req, 4) is None  # a field over the limit

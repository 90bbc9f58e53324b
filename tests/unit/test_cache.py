"""The credential cache on its own: keyed fingerprints, TTLs, LRU bound, flushes."""

from saslauthpy.cache import CredentialCache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make(**kw):
    clock = Clock()
    return CredentialCache(clock=clock, **{"max_entries": 100, "ttl": 60, **kw}), clock


def test_good_password_is_a_hit_other_passwords_miss():
    c, _ = make()
    k = c.key("alice", "", "smtp")
    c.remember_good(k, c.fingerprint(k, b"secret"))
    assert c.lookup(k, c.fingerprint(k, b"secret")) is True
    assert c.lookup(k, c.fingerprint(k, b"wrong")) is None
    assert c.lookup(c.key("alice", "", "imap"), c.fingerprint(k, b"secret")) is None


def test_entries_expire_after_ttl_and_hits_do_not_extend_them():
    c, clock = make(ttl=60)
    k = c.key("alice", "", "smtp")
    fp = c.fingerprint(k, b"secret")
    c.remember_good(k, fp)
    clock.now += 59
    assert c.lookup(k, fp) is True
    clock.now += 2
    assert c.lookup(k, fp) is None
    assert len(c) == 0


def test_fingerprints_are_keyed_per_process_and_per_user():
    a, _ = make()
    b, _ = make()
    k = a.key("alice", "", "smtp")
    assert a.fingerprint(k, b"secret") != b.fingerprint(k, b"secret")
    assert a.fingerprint(k, b"secret") != a.fingerprint(a.key("bob", "", "smtp"), b"secret")
    assert b"secret" not in a.fingerprint(k, b"secret")


def test_size_is_fixed_and_a_full_set_evicts_its_least_recently_used_entry():
    c, clock = make(max_entries=8)  # one set of 8 ways
    assert c.capacity == 8 and len(c._mm) == 8 * 64
    entries = {}
    for name in "abcdefgh":
        clock.now += 1
        k = c.key(name, "", "")
        entries[name] = (k, c.fingerprint(k, b"pw"))
        c.remember_good(*entries[name])
    clock.now += 1
    assert c.lookup(*entries["a"]) is True  # a is now the most recently used
    clock.now += 1
    k = c.key("i", "", "")
    c.remember_good(k, c.fingerprint(k, b"pw"))
    assert len(c) == 8
    assert c.lookup(*entries["b"]) is None  # b was the least recently used
    assert c.lookup(*entries["a"]) is True
    assert c.lookup(k, c.fingerprint(k, b"pw")) is True


def test_many_entries_fit_the_fixed_table():
    c, _ = make(max_entries=100_000)
    assert len(c._mm) == c.capacity * 64 <= 6_500_000
    for i in range(2000):
        k = c.key(f"user{i}", "", "smtp")
        c.remember_good(k, c.fingerprint(k, b"pw"))
    found = sum(c.lookup(c.key(f"user{i}", "", "smtp"),
                         c.fingerprint(c.key(f"user{i}", "", "smtp"), b"pw")) is True
                for i in range(2000))
    assert found == 2000  # 2,000 keys in 12,500 sets of 8: no set overflows


def test_a_torn_entry_reads_as_a_miss_never_as_a_hit():
    c, _ = make()
    k = c.key("alice", "", "")
    fp = c.fingerprint(k, b"secret")
    c.remember_good(k, fp)
    off = c._find(hash(b"+" + k.encode()))
    c._mm[off + 24:off + 32] = b"\xff" * 8  # expiry overwritten by another writer (NaN)
    assert c.lookup(k, fp) is None


def test_the_table_is_shared_with_forked_worker_processes():
    import os

    c = CredentialCache(100, 60)
    k = c.key("alice", "", "smtp")
    pid = os.fork()
    if pid == 0:  # a worker process learns a good password...
        c.remember_good(k, c.fingerprint(k, b"secret"))
        os._exit(0)
    os.waitpid(pid, 0)
    assert c.lookup(k, c.fingerprint(k, b"secret")) is True  # ...and the parent sees it
    assert c.flush("alice") == 1
    assert c.lookup(k, c.fingerprint(k, b"secret")) is None


def test_negative_ttl_remembers_the_failed_password_only():
    c, clock = make(negative_ttl=5)
    k = c.key("alice", "", "")
    c.remember_bad(k, c.fingerprint(k, b"guess"))
    assert c.lookup(k, c.fingerprint(k, b"guess")) is False
    assert c.lookup(k, c.fingerprint(k, b"other")) is None
    clock.now += 6
    assert c.lookup(k, c.fingerprint(k, b"guess")) is None


def test_no_negative_caching_by_default():
    c, _ = make()
    k = c.key("alice", "", "")
    c.remember_bad(k, c.fingerprint(k, b"guess"))
    assert c.lookup(k, c.fingerprint(k, b"guess")) is None


def test_flush_one_user_keeps_the_others():
    c, _ = make()
    entries = {}
    for login, realm, service in [("alice", "", "smtp"), ("alice", "", "imap"),
                                  ("alice@ex.org", "ex.org", "smtp"), ("bob", "", "smtp")]:
        k = c.key(login, realm, service)
        entries[(login, service)] = (k, c.fingerprint(k, b"pw"))
        c.remember_good(*entries[(login, service)])
    assert c.flush("alice") == 3
    assert c.lookup(*entries[("bob", "smtp")]) is True
    assert c.lookup(*entries[("alice", "smtp")]) is None
    assert c.flush() == 1
    assert len(c) == 0


def test_flush_by_user_covers_every_spelling_a_backend_may_fold():
    c, _ = make()
    spellings = ["alice", "Alice", " alice", "ALICE@example.org", "alice@other"]
    for login in spellings + ["bob", "alicex"]:
        k = c.key(login, "", "smtp")
        c.remember_good(k, c.fingerprint(k, b"pw"))
    assert c.flush("alice") == len(spellings)
    for login, left in [*[(s, None) for s in spellings], ("bob", True), ("alicex", True)]:
        k = c.key(login, "", "smtp")
        assert c.lookup(k, c.fingerprint(k, b"pw")) is left, login


def test_an_answer_to_a_request_older_than_a_flush_is_not_remembered():
    c, _ = make(negative_ttl=30)
    k = c.key("alice", "", "smtp")
    fp = c.fingerprint(k, b"old-pw")
    came_in = c.generation  # the request arrives...
    c.flush("alice")  # ... the administrator changes alice's password ...
    c.remember_good(k, fp, came_in)  # ... the old answer comes back
    c.remember_bad(k, c.fingerprint(k, b"x"), came_in)
    assert c.lookup(k, fp) is None and len(c) == 0
    now = c.generation
    c.remember_good(k, fp, now)  # a request after the flush is remembered
    assert c.lookup(k, fp) is True
    c.flush()
    assert c.generation == now + 1 and c.lookup(k, fp) is None

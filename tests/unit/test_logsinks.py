"""Log lines: saslauthd's decision format, printable text whatever bytes a login carries,
and the journal's native protocol (a datagram socket stands in for journald's)."""

from __future__ import annotations

import socket
import struct
import syslog

import pytest

from saslauthpy import audit, logsinks
from saslauthpy.authenticator import Decision, Peer
from saslauthpy.protocol import Request, parse_request


def decision(result="fail", reason="wrong password", backend="sql", cached=False, **req):
    fields = {"login": "bob", "password": b"pw", "service": "smtp", "realm": ""} | req
    return Decision(Request(**fields), result, reason, backend, cached, 0.01, Peer())


def test_failure_and_success_lines_are_saslauthds():
    assert audit.saslauthd_line(decision()) == \
        "auth failure: [user=bob] [service=smtp] [realm=] [mech=sql] [reason=wrong password]"
    assert audit.saslauthd_line(decision("ok", "", realm="example.org")) == \
        "auth success: [user=bob] [service=smtp] [realm=example.org] [mech=sql]"
    assert audit.saslauthd_line(decision("ok", "", "cache", True)) == \
        "auth success (cached): [user=bob] [service=smtp] [realm=]"
    assert audit.saslauthd_line(decision(reason="")).endswith("[reason=Unknown]")
    bad = Decision(None, "malformed", "read timeout", "", False, 10.0, Peer())
    assert audit.saslauthd_line(bad) == "bad request: [reason=read timeout]"


def test_a_non_utf8_login_becomes_escaped_text():
    req = parse_request(b"\x00\x04b\xffo\xc3\x00\x02pw\x00\x04smtp\x00\x02r\xfe")
    line = logsinks.printable(audit.saslauthd_line(
        Decision(req, "fail", "unknown user", "sql", False, 0.0, Peer())))
    assert "[user=b\\xffo\\xc3]" in line and "[realm=r\\xfe]" in line
    line.encode("utf-8")  # valid UTF-8: syslog(3), the journal and stderr all take it


@pytest.mark.parametrize("text,shown", [
    ("a\nb", "a\\x0ab"),          # no forged second line
    ("a\rb\x1b[2J", "a\\x0db\\x1b[2J"),
    ("tab\there", "tab\\x09here"),
    ("nul\x00", "nul\\x00"),
    ("del\x7f", "del\\x7f"),
    ("naïve", "naïve"),           # real UTF-8 stays as it is
])
def test_control_characters_are_escaped(text, shown):
    assert logsinks.printable(text) == shown


def test_daemon_messages_keep_their_lines():
    assert logsinks.printable("Traceback:\n  line\tx\x07", keep_lines=True) == \
        "Traceback:\n  line\tx\\x07"


def parse_journal(data: bytes) -> dict[str, str]:
    """The journal's native format: NAME=value lines, or NAME, newline, 64-bit length, data."""
    fields = {}
    while data:
        head, sep, rest = data.partition(b"\n")
        if b"=" in head:
            name, value = head.split(b"=", 1)
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            name, value, data = head, rest[8:8 + size], rest[8 + size + 1:]
        fields[name.decode()] = value.decode()
    return fields


def test_journal_datagrams_carry_priority_and_facility(tmp_path):
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(path)
        journal.settimeout(5)
        sink = logsinks.JournalSink(path)
        sink.emit(syslog.LOG_NOTICE, syslog.LOG_LOCAL3, "auth failure: [user=b\udcffo]")
        one = parse_journal(journal.recv(65536))
        sink.emit(syslog.LOG_ERR, syslog.LOG_AUTH, "Traceback:\n  boom")
        two = parse_journal(journal.recv(65536))
    assert one == {"MESSAGE": "auth failure: [user=b\\xffo]", "PRIORITY": "5",
                   "SYSLOG_FACILITY": "19", "SYSLOG_IDENTIFIER": "saslauthpy"}
    assert two["MESSAGE"] == "Traceback:\n  boom" and two["PRIORITY"] == "3"
    assert two["SYSLOG_FACILITY"] == "4"


def test_without_the_journal_socket_lines_get_a_priority_prefix(tmp_path, capsys):
    logsinks.JournalSink(str(tmp_path / "absent")).emit(syslog.LOG_NOTICE, syslog.LOG_AUTH,
                                                        "auth failure: x\nmore")
    assert capsys.readouterr().err == "<5>auth failure: x\n<5>more\n"


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path, monkeypatch):
    import os

    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert logsinks.stderr_is_journal()
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
    assert not logsinks.stderr_is_journal()
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not logsinks.stderr_is_journal()

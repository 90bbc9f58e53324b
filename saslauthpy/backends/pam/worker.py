"""The PAM worker process: ``python -I .../saslauthpy/backends/pam/worker.py``, from ``/``.

It runs as root and imports nothing but the standard library, so it is started by its
path in isolated mode: no directory an unprivileged user could write to is on its path.

PAM modules run inside this small process, never inside the daemon: a module that
crashes, hangs or leaks takes only this worker with it (cyrus-sasl#547).  The daemon
keeps a few of them (``pam.WorkerPool``), each answering one request at a time.

What one request does, as saslauthd's ``auth_pam``: ``pam_start(service, login)`` with a
conversation that answers echo-off prompts with the password and the login prompt with
the login, ``PAM_RHOST`` from the client address (cut at ``;``),
``pam_authenticate(PAM_SILENT)`` then ``pam_acct_mgmt(PAM_SILENT)``.  One difference:
``PAM_FAIL_DELAY`` is set to a function that only records the delay a module asked for
(pam_unix: ~2 s on a wrong password); the worker answers at once and the daemon waits
that long asynchronously, so the delay never holds a worker.

Frames on stdin/stdout: a 4-byte big-endian length, then the payload.  A request payload
is four 2-byte-counted fields (service, login, password, rhost); an answer payload is
JSON ``{"result": ..., "reason": ..., "delay": seconds, "code": pam_rc}``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import struct
import sys

PAM_SUCCESS = 0
PAM_SYSTEM_ERR = 4
PAM_BUF_ERR = 5
PAM_AUTH_ERR = 7
PAM_AUTHINFO_UNAVAIL = 9
PAM_USER_UNKNOWN = 10
PAM_CONV_ERR = 19
PAM_ABORT = 26
PAM_SILENT = 0x8000
PAM_RHOST = 4
PAM_USER_PROMPT = 9
PAM_FAIL_DELAY = 10
PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_ERROR_MSG = 3
PAM_TEXT_INFO = 4
TEMPORARY = {1, 2, 3, PAM_SYSTEM_ERR, PAM_BUF_ERR, PAM_AUTHINFO_UNAVAIL, PAM_ABORT}


class PamMessage(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class PamResponse(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


CONV_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int,
                             ctypes.POINTER(ctypes.POINTER(PamMessage)),
                             ctypes.POINTER(ctypes.POINTER(PamResponse)), ctypes.c_void_p)
DELAY_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


class PamConv(ctypes.Structure):
    _fields_ = [("conv", CONV_FUNC), ("appdata_ptr", ctypes.c_void_p)]


def _load() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    pam = ctypes.CDLL(ctypes.util.find_library("pam") or "libpam.so.0")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    vp, i = ctypes.c_void_p, ctypes.c_int
    pam.pam_start.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(PamConv),
                              ctypes.POINTER(vp)]
    pam.pam_set_item.argtypes = [vp, i, vp]
    pam.pam_get_item.argtypes = [vp, i, ctypes.POINTER(vp)]
    pam.pam_authenticate.argtypes = [vp, i]
    pam.pam_acct_mgmt.argtypes = [vp, i]
    pam.pam_end.argtypes = [vp, i]
    pam.pam_strerror.argtypes = [vp, i]
    pam.pam_strerror.restype = ctypes.c_char_p
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.calloc.restype = vp
    libc.strdup.argtypes = [ctypes.c_char_p]
    libc.strdup.restype = vp
    return pam, libc


class Conversation:
    """The PAM conversation and fail-delay callbacks for one pam_start."""

    def __init__(self, libc: ctypes.CDLL, login: bytes, password: bytes):
        self.libc = libc
        self.login = login
        self.password = password
        self.handle = ctypes.c_void_p()
        self.pam: ctypes.CDLL | None = None
        self.delay_usec = 0
        self.conv_fn = CONV_FUNC(self._conv)
        self.delay_fn = DELAY_FUNC(self._delay)

    def _delay(self, retval: int, usec: int, appdata: int | None) -> None:
        self.delay_usec = max(self.delay_usec, usec)

    def _login_prompt(self) -> bytes | None:
        item = ctypes.c_void_p()
        if self.pam is None or self.pam.pam_get_item(self.handle, PAM_USER_PROMPT,
                                                     ctypes.byref(item)) != PAM_SUCCESS:
            return None
        return ctypes.string_at(item.value) if item.value else None

    def _conv(self, n: int, msgs, resp, appdata) -> int:  # noqa: ANN001 - ctypes callback
        if n <= 0:
            return PAM_CONV_ERR
        replies = self.libc.calloc(n, ctypes.sizeof(PamResponse))
        if not replies:
            return PAM_BUF_ERR
        arr = ctypes.cast(replies, ctypes.POINTER(PamResponse))
        for i in range(n):
            msg = msgs[i].contents
            text = msg.msg or b""
            if msg.msg_style == PAM_PROMPT_ECHO_OFF:
                arr[i].resp = self.libc.strdup(self.password)
            elif msg.msg_style == PAM_PROMPT_ECHO_ON:
                if text == self._login_prompt():
                    arr[i].resp = self.libc.strdup(self.login)
            elif msg.msg_style not in (PAM_ERROR_MSG, PAM_TEXT_INFO):
                for j in range(i):  # an unknown style: give up, as saslauthd does
                    self.libc.free(ctypes.c_void_p(arr[j].resp))
                self.libc.free(ctypes.c_void_p(replies))
                return PAM_CONV_ERR
            arr[i].resp_retcode = 0
        resp[0] = arr
        return PAM_SUCCESS


def authenticate(pam: ctypes.CDLL, libc: ctypes.CDLL, service: bytes, login: bytes,
                 password: bytes, rhost: bytes) -> dict:
    conv = Conversation(libc, login, password)
    conv.pam = pam
    pamconv = PamConv(conv.conv_fn, None)
    rc = pam.pam_start(service or b"other", login, ctypes.byref(pamconv),
                       ctypes.byref(conv.handle))
    if rc != PAM_SUCCESS:
        return {"result": "tempfail", "reason": "PAM start error", "code": rc, "delay": 0}
    stage = "auth"
    try:
        pam.pam_set_item(conv.handle, PAM_FAIL_DELAY, ctypes.cast(conv.delay_fn, ctypes.c_void_p))
        if rhost:
            pam.pam_set_item(conv.handle, PAM_RHOST, ctypes.cast(ctypes.c_char_p(rhost),
                                                                 ctypes.c_void_p))
        rc = pam.pam_authenticate(conv.handle, PAM_SILENT)
        if rc == PAM_SUCCESS:
            stage = "acct"
            rc = pam.pam_acct_mgmt(conv.handle, PAM_SILENT)
        detail = (pam.pam_strerror(conv.handle, rc) or b"").decode(errors="replace")
    finally:
        pam.pam_end(conv.handle, rc)
    if rc == PAM_SUCCESS:
        return {"result": "ok", "reason": "", "code": 0, "delay": 0}
    if stage == "auth" and rc == PAM_USER_UNKNOWN:
        result = "unknown"
    elif rc in TEMPORARY:
        result = "tempfail"
    else:
        result = "fail"
    reason = ("PAM auth error" if stage == "auth" else "PAM acct error") + f": {detail}"
    return {"result": result, "reason": reason, "code": rc,
            "delay": conv.delay_usec / 1e6}


def read_frame(stream) -> bytes | None:  # noqa: ANN001
    head = stream.read(4)
    if len(head) < 4:
        return None
    (n,) = struct.unpack(">I", head)
    data = stream.read(n)
    return data if len(data) == n else None


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian length in front."""
    return struct.pack(">I", len(payload)) + payload


def write_frame(stream, payload: bytes) -> None:  # noqa: ANN001
    stream.write(frame(payload))
    stream.flush()


def encode_request(service: bytes, login: bytes, password: bytes, rhost: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in (service, login, password, rhost))


def decode_request(payload: bytes) -> list[bytes]:
    fields, pos = [], 0
    for _ in range(4):
        (n,) = struct.unpack_from(">H", payload, pos)
        fields.append(payload[pos + 2:pos + 2 + n])
        pos += 2 + n
    return fields


def main() -> None:
    pam, libc = _load()
    stdin = sys.stdin.buffer
    # Answers go to a private copy of stdout; fd 1 becomes /dev/null so that nothing
    # a PAM module prints can corrupt the answer channel.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    while True:
        payload = read_frame(stdin)
        if payload is None:
            return
        service, login, password, rhost = decode_request(payload)
        answer = authenticate(pam, libc, service, login, password, rhost)
        del password
        write_frame(stdout, json.dumps(answer).encode())


if __name__ == "__main__":
    main()

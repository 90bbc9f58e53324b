"""Run a command with a pseudo-terminal as its controlling terminal, answer its prompts,
and collect what it showed there (password prompts read /dev/tty, not a pipe)."""

from __future__ import annotations

import os
import pty
import signal

from harness import python_env


def on_tty(argv: list[str], answers: list[str] = (), interrupt: bool = False) -> tuple[int, str]:
    """(exit status, everything written to the terminal).  Each answer is typed after the
    next prompt (a line ending in ": "); ``interrupt`` then sends SIGINT at the next prompt,
    as Ctrl-C does."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command with the pty as its terminal
        os.environ.update(python_env())
        # Ctrl-C must reach it even when this test run ignores SIGINT (started in the
        # background by a shell without job control), since an ignored signal stays so.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execv(argv[0], argv)
    out = b""

    def prompt() -> None:
        nonlocal out
        while not out.rsplit(b"\n", 1)[-1].endswith(b": "):
            out += os.read(fd, 1024)

    for answer in answers:
        prompt()
        os.write(fd, answer.encode() + b"\n")
        out += os.read(fd, 1024)
    if interrupt:
        prompt()
        os.kill(pid, signal.SIGINT)
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")

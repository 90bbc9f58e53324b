"""Taking connections off the shared listening socket for the fast lane.

Two ways (``[server] accept``, measured side by side in docs/performance.md):

``thread`` (the default, and the only one with which the fast lane checks inline): a
thread of the worker's own waits in ``epoll_wait`` with the socket registered
``EPOLLEXCLUSIVE``, so the kernel wakes one idle worker per connection, preferring the
same warm one while the load is low.
``loop``: the event loop watches the socket (``add_reader``); every worker's loop wakes
for every connection and the first to accept it wins.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from .fastlane import FastLane, Handover

log = logging.getLogger("saslauthpy")

POLL_INTERVAL = 0.25  # seconds a blocked acceptor may take to notice it must stop
BATCH = 64  # connections accepted per wake-up before looking at the rest again
BACK_OFF = 0.01  # seconds an acceptor pauses when the process is out of descriptors
PENDING = 32  # hand-overs an acceptor may have queued for the loop (descriptors held)
PARKED = 16  # connections a thread acceptor watches for their request at once
PARK_TIME = 0.005  # seconds a parked connection may take to send its request
_SCARCE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Acceptor:
    """Takes connections off the listening socket and gives each to ``lane.handle``."""

    def __init__(self, listen: socket.socket, lane: FastLane, loop,
                 shed: Callable[[], None]):
        self.listen = listen
        self.lane = lane
        self.loop = loop
        self.shed = shed  # frees descriptors: drops the oldest unfinished connection
        self._scarce_logged = 0.0

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _accept_some(self, make_room: Callable[[], None]) -> None:
        """Accept and handle what is queued (up to ``BATCH``); when descriptors run out,
        ``make_room()`` (which also backs off a moment)."""
        accept = self.listen._accept  # type: ignore[attr-defined]
        handle = self.lane.handle
        set_blocking = os.set_blocking
        for _ in range(BATCH):
            if self._paused():
                return
            try:
                fd, _ = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _SCARCE:
                    self._scarce(exc)
                    make_room()
                else:
                    log.error("accept failed: %s", exc)
                return
            try:
                set_blocking(fd, False)
                handle(fd)
            except Exception:
                log.exception("fast lane: connection failed")

    def _paused(self) -> bool:
        return False

    def _scarce(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._scarce_logged > 60:
            self._scarce_logged = now
            log.warning("accept: %s; dropping the oldest unfinished connection", exc.strerror)


class ThreadAcceptor(Acceptor):
    """A thread of its own, blocked in ``epoll_wait`` on the listening socket, which it
    registers with ``EPOLLEXCLUSIVE``: the kernel wakes one idle worker per connection,
    the first in registration order, so at low load a warm worker takes the connections
    and under load the others join in.  Hand-overs go to the loop thread, at most
    ``PENDING`` at a time: a flood waits in the kernel's backlog, not in descriptors
    the loop has not counted yet.

    An idle worker often accepts a connection before its client has written the request
    (the client connects, then writes): such a connection is *parked*, watched in the
    same ``epoll`` for up to ``PARK_TIME`` seconds, ``PARKED`` at most, and served by
    the fast lane when its request comes; after that, or beyond that many, it goes to
    the event loop, which gives it the read deadline (slow or idle clients).

    (One connection per wake-up, which spares the failed ``accept`` that ends a batch,
    lost side by side under 8 clients: 22,400 – 33,000 against 25,300 – 34,500 answers/s.)"""

    def start(self) -> None:
        self.lane.threaded = True
        self._parked: dict[int, float] = {}  # descriptor -> when it was accepted
        self.lane.park = self._park
        self.listen.setblocking(False)
        self._poll = select.epoll()
        self._poll.register(self.listen.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        lane = self.lane
        loop = self.loop
        slots = threading.Semaphore(PENDING)

        def queued(direct: Handover) -> Handover:
            def handover(*args) -> None:
                slots.acquire()
                loop.call_soon_threadsafe(direct, *args, slots.release)

            return handover

        lane.handover = queued(lane.handover)
        lane.take = queued(lane.take)
        self._running = True
        self._thread = threading.Thread(target=self._run, name="fastlane", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poll = self._poll.poll
        listening = self.listen.fileno()
        parked = self._parked
        while self._running:
            if not parked:
                if poll(POLL_INTERVAL, 1):
                    self._accept_some(self._make_room)
                continue
            oldest = min(parked.values())
            for fd, _ in poll(max(0.0, oldest + PARK_TIME - time.monotonic()), PARKED + 1):
                if fd == listening:
                    self._accept_some(self._make_room)
                elif fd in parked:
                    self._unpark(fd, self.lane.handle)
            late = time.monotonic() - PARK_TIME
            for fd in [fd for fd, started in parked.items() if started <= late]:
                self._unpark(fd, self._hand_over)
        for fd in list(parked):  # stopping: nothing was sent on these (nothing to record)
            self._unpark(fd, lambda fd, _: os.close(fd))

    def _park(self, fd: int, started: float) -> bool:
        if len(self._parked) >= PARKED:
            return False
        self._poll.register(fd, select.EPOLLIN)
        self._parked[fd] = started
        return True

    def _unpark(self, fd: int, then: Callable[[int, float], None]) -> None:
        started = self._parked.pop(fd)
        self._poll.unregister(fd)
        try:
            then(fd, started)
        except Exception:
            log.exception("fast lane: connection failed")

    def _hand_over(self, fd: int, started: float) -> None:
        self.lane.counts.handed += 1
        self.lane.handover(fd, b"")

    def _make_room(self) -> None:
        self.loop.call_soon_threadsafe(self.shed)
        time.sleep(BACK_OFF)

    def stop(self) -> None:
        self._running = False
        self._thread.join(POLL_INTERVAL * 4)
        self._poll.close()


class LoopAcceptor(Acceptor):
    """The event loop's ``add_reader`` on the listening socket; every worker's loop wakes
    for every connection, and the first to accept it wins.  With ``PENDING`` hand-overs
    not yet counted by the server, it stops watching until they are."""

    def start(self) -> None:
        self.listen.setblocking(False)
        self._running = True
        self._watching = False
        self._pending = 0
        self.lane.handover = self._counted(self.lane.handover)
        self.lane.take = self._counted(self.lane.take)
        self._watch()

    def _counted(self, direct: Handover) -> Handover:
        def handover(*args) -> None:
            self._pending += 1
            if self._pending >= PENDING:
                self._unwatch()
            direct(*args, self._counted_one)

        return handover

    def _counted_one(self) -> None:
        self._pending -= 1
        if self._pending < PENDING:
            self._watch()

    def _watch(self) -> None:
        if self._running and not self._watching:
            self._watching = True
            self.loop.add_reader(self.listen.fileno(), self._accept_some, self._make_room)

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self.loop.remove_reader(self.listen.fileno())

    def _paused(self) -> bool:
        return not self._watching

    def _make_room(self) -> None:
        self.shed()
        self._unwatch()
        self.loop.call_later(BACK_OFF, self._watch)

    def stop(self) -> None:
        self._running = False
        self._unwatch()


ACCEPTORS = {"thread": ThreadAcceptor, "loop": LoopAcceptor}

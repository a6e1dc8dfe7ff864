"""Bounds on one mail's processing: time (a timer that interrupts it) and memory (a limit
on the processor process's address space, so that a mail needing too much fails alone
with MemoryError instead of the kernel killing the process).

The parsers are linear and bounded in depth, so a legitimate mail takes milliseconds; these
are the backstop for what no parser foresaw.
"""

from __future__ import annotations

import resource
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class OverBudget(BaseException):
    """Processing one mail took longer than its budget. A BaseException, as KeyboardInterrupt
    is: the catch-alls that keep one bad part from failing the whole mail (a parser never
    raises; an unreadable attachment is only named) must not swallow the end of its time."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise OverBudget inside the block once it has run ``seconds``. A timer signal does
    this, so only in the main thread (serve's processor process, the CLI); elsewhere
    (the processor thread of tests and `liuhen demo`) and for ``seconds`` <= 0 no limit."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise OverBudget(f"processing took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space (0: leave it as it is). Only for a process that does
    nothing but process mail: every allocation beyond it raises MemoryError."""
    if megabytes <= 0:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = megabytes << 20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

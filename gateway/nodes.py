"""Who claims work (a mail to deliver, a stored mail to process) when several gateway
processes — on one machine or several — share one database: `host:pid`, and a claim token
after a slash. A claim of a process that is gone from this host can be released at once."""

from __future__ import annotations

import os
import socket


def node_id() -> str:
    """This host and process (a restart is a new claimant)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def gone_from_this_host(claimant: str) -> bool:
    """Whether `claimant` (host:pid/token) was a process of this host that no longer runs."""
    host, _, pid = claimant.split("/")[0].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # our own pid from before a restart (a container's pid 1); nothing is in flight yet
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A killed process nobody has reaped yet (a container whose init does not) still has a
    pid; it runs no more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False

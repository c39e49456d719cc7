"""One training job at a time: ``python -m core.lab.train_queue LOCKFILE -- CMD ...`` waits for the lab's
training lock, then becomes ``CMD`` (``os.execv``) still holding it, so the lock is released only when
that training process ends, however it ends (the OS drops the ``flock`` with the last open descriptor).

Jobs started while another trains wait here in order of arrival (the kernel grants a free lock to one
waiter at a time) and show as ``queued`` (``core.lab.jobs``). Linux/macOS only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import os
import sys


def main(argv: list[str]) -> None:
    """Block on the lock in ``argv[0]``, then exec ``argv[2:]`` (``argv[1]`` is ``--``)."""
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: python -m core.lab.train_queue LOCKFILE -- COMMAND [ARGS ...]")
    fd = os.open(argv[0], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another job trains
    os.set_inheritable(fd, True)  # the training process keeps the lock until it exits
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])

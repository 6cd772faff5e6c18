"""Signals in worker processes (a study's cell pool, an LM sweep's run pool).

The parent stops its workers with SIGTERM when it is interrupted (Ctrl-C, SIGTERM, SIGHUP).
A worker inside a task raises ``errors.Interrupted`` there, so the task's run folder releases its
lock and its atomic writes drop their temporaries on the way out, and then ends the process
(``os._exit``), so the pool never hands it another task; between tasks it ends at once.
"""

from __future__ import annotations

import os
import signal

from .errors import Interrupted

_IN_TASK = False


def _handler(signum, frame):
    if _IN_TASK:
        raise Interrupted(signum)
    os._exit(128 + signum)


def worker_signals() -> None:
    """Install the worker's SIGTERM / SIGHUP handling (a pool initializer, or a task's first line);
    SIGINT is left to the parent, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _handler)


def run_task(fn, *args, **kw):
    """``fn(*args, **kw)`` as a worker's task: an interruption unwinds it, then ends the process."""
    global _IN_TASK
    _IN_TASK = True
    try:
        return fn(*args, **kw)
    except Interrupted as e:
        os._exit(128 + e.signum)
    finally:
        _IN_TASK = False

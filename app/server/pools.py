"""Thread pools that belong to one process: made on first use, made anew in a forked child.

Gunicorn forks its workers from a master that may have imported (and, in tests, used) the
code that owns a pool. A forked child has none of its parent's threads, and an inherited
``ThreadPoolExecutor`` believes it still has them: work queued on it would wait for ever. So a
:class:`ProcessPool` forgets its executor in the child, which then makes its own when it first
needs one. Standard library only. The crypto core owns no pool: its callers here pass one in.

Forgetting is all a child can do: a lock that any thread of the parent held at the fork (a pool
thread in OpenSSL, a timer in SQLite) stays held in the child for ever. So no process with
threads forks a worker: Gunicorn's master never builds the app (deploy/gunicorn.conf.py,
checked in tests/test_worker.py), and tests/test_store.py spawns its racing workers.

A pool never refuses work: once it no longer takes any (the interpreter is exiting, as a
Gunicorn worker does while its last uploads finish), the caller's thread does the work itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class _Executor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that runs work in the caller's thread once it is shut down.

    A stopping Gunicorn worker lets requests in flight finish, but its interpreter is already
    exiting, and every pool then refuses new work: an upload that needed one failed with a 500
    ("cannot schedule new futures after shutdown") within the grace period.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        try:
            return super().submit(fn, *args, **kwargs)
        except RuntimeError:  # shut down, or the interpreter is exiting
            future: Future[T] = Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, as the pool does
                future.set_exception(exc)
            return future


class ProcessPool:
    """A lazily made ``ThreadPoolExecutor`` of ``threads`` threads, one per process."""

    def __init__(self, threads: int, name: str) -> None:
        self._threads, self._name = threads, name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self) -> ThreadPoolExecutor:
        """This process's executor, made on first use."""
        with self._lock:
            if self._executor is None:
                self._executor = _Executor(self._threads, thread_name_prefix=self._name)
            return self._executor

    def _forget(self) -> None:
        # The parent's lock may have been held by one of its threads at the fork: a new one.
        self._executor, self._lock = None, threading.Lock()


_SEAL = ProcessPool(3, "tipbox-seal")


def seal_pool() -> ThreadPoolExecutor:
    """The process's pool for item writers (:class:`app.crypto.envelope.Writer` takes it from
    its caller): three threads, for the half of a batch that the request thread does not seal
    itself, the write of the previous batch, and a spare.

    Shared by every item written at once: under load they take turns, and no request ever
    waits on a task that waits on another task, so the pool cannot deadlock.
    """
    return _SEAL.get()

"""The benchmark's load generator: N client threads, each with its own connection, sharing one work list."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

Connection = TypeVar("Connection")


def in_parallel(count: int, concurrency: int, connect: Callable[[], AbstractContextManager[Connection]],
                send: Callable[[Connection, int], None]) -> None:
    """Call ``send(connection, i)`` for every i in ``range(count)``, in order of i, on ``concurrency`` threads.

    Each thread opens its own connection with ``connect``. The first exception of any thread stops
    the others taking more work and is raised here once all threads are done.
    """
    lock = threading.Lock()
    cursor = [0]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with connect() as connection:
                while True:
                    with lock:
                        if errors or cursor[0] >= count:
                            return
                        index = cursor[0]
                        cursor[0] += 1
                    send(connection, index)
        except BaseException as exc:  # handed to the caller below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"bench-client-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

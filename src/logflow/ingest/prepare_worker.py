"""A helper process that prepares the processor's next batch while the current one is written.

The processor is one Python thread, and a store write is half pure CPU work (decoding payloads,
tokenizing, compressing) and half database work. Threads cannot overlap the two: the sqlite3
module releases the GIL for every row, and a thread busy in Python then holds the writer up
for a whole switch interval (5 ms) per row. A second process can. It receives the payloads
of one batch at a time and sends back the store's prepared form (see PreparingStore); nothing
in it is durable, so losing it loses nothing: the batch is read from the queue again.

The helper is ``python -m logflow.ingest.prepare_worker module:function``, talking length-
prefixed ``marshal`` data over its stdin and stdout: unlike multiprocessing's spawn it never
imports the parent's ``__main__``, so it works under any launcher. marshal, not pickle: both ends
are the same interpreter, the data is plain values, and for a batch's 10,000 payloads and
prepared rows it costs ~0.6 µs per event less than pickle (measured), which is ~1.5 % of all
the CPU an event costs on its way in.

A store whose writes wait on the network (OpenSearch) needs no helper: ``InlinePreparer``
prepares in the processor's own thread while another thread waits for the engine.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import marshal
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import IO, Any, NoReturn, Protocol

from logflow.backends.errors import BackendUnavailable
from logflow.backends.store.base import PreparedBatch
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level
from logflow.log_setup import setup_logging

log = logging.getLogger("logflow.processor")

Prepare = Callable[[list[bytes]], PreparedBatch]
_LENGTH = struct.Struct("<Q")


class PrepareFailed(RuntimeError):
    """The preparation itself raised: a bug, not a condition that retrying fixes."""

    @classmethod
    def of(cls, failure: str) -> PrepareFailed:
        """The error for a preparation that raised; ``failure`` as ``described`` gives it."""
        return cls(f"preparing a batch failed: {failure}")


def described(exc: Exception) -> str:
    """How a preparation's exception is reported, from the helper process or from this one."""
    return f"{type(exc).__name__}: {exc}"


@functools.cache
def _canary() -> bytes:
    """A payload every store prepares: if it fails too, the preparation itself is broken."""
    return LogEvent(id="logflow-canary", timestamp=1_700_000_000_000_000, level=Level.INFO, service="logflow",
                    message="a payload every store prepares").to_wire()


def prepare_isolating(prepare: Prepare, payloads: list[bytes]) -> PreparedBatch:
    """``prepare(payloads)``; if that raises, the payloads that make it raise on their own become
    undecodable (with the error as the reason) and the others are prepared without them.

    The stores refuse what they know to be malformed (see ``check_wire_fields``), but payloads
    that no check foresaw must not stop the processor on every retry of their batch (poison
    pills, possibly a whole batch of them from another writer); dead-lettered, they can be replayed
    once the cause is fixed. Whether the fault is the payloads' or the code's is asked of a
    canary, a payload every store prepares: if it fails as well, the preparation is broken and
    this raises, as a bug should, instead of dead-lettering everything.
    """
    try:
        return prepare(payloads)
    except Exception as batch_error:
        try:
            prepare([_canary()])
        except Exception:
            raise batch_error from None  # the code is at fault, not the payloads
        failing: dict[int, str] = {}
        for index, payload in enumerate(payloads):
            try:
                prepare([payload])
            except Exception as exc:
                failing[index] = f"cannot be prepared for the store: {described(exc)}"  # the processor cuts it
        if not failing:
            raise  # fails together, never alone: not a payload's fault either
    log.error("processor: %d of %d payloads of a batch cannot be prepared for the store and go to the dead "
              "letters; the first: %s", len(failing), len(payloads), next(iter(failing.values())))
    kept = [index for index in range(len(payloads)) if index not in failing]
    prepared = prepare([payloads[index] for index in kept]) if kept else PreparedBatch(undecodable=[], data=[])
    undecodable = [(kept[index], reason) for index, reason in prepared.undecodable] + list(failing.items())
    return PreparedBatch(undecodable=sorted(undecodable), data=prepared.data)


class BatchPreparer(Protocol):
    """Where the processor prepares its next batch: at most one batch in flight.

    ``submit`` hands a batch over, ``result`` takes its prepared form (raising PrepareFailed if
    the preparation raised), ``discard`` drops a batch in flight, ``close`` releases resources.
    """

    def submit(self, payloads: list[bytes]) -> None: ...

    def result(self) -> PreparedBatch: ...

    def discard(self) -> None: ...

    def close(self) -> None: ...


class InlinePreparer:
    """Prepares in the calling thread, at submit: for a store whose writes wait on the network.

    The processor still prepares batch N+1 while batch N is written, because the write runs on
    another thread and spends its time waiting for the engine with the GIL released. Measured
    against the helper process on the OpenSearch path: 1.5 µs of CPU per event less (a batch no
    longer crosses two pipes by marshal), with the same drain rate.
    """

    def __init__(self, prepare: Prepare) -> None:
        self._prepare = prepare
        self._ready: PreparedBatch | PrepareFailed | None = None

    def submit(self, payloads: list[bytes]) -> None:
        if self._ready is not None:
            raise RuntimeError("InlinePreparer.submit: the previous batch was not taken")
        try:
            self._ready = prepare_isolating(self._prepare, payloads)
        except Exception as exc:  # reported at result(), as the helper process reports it
            failed = PrepareFailed.of(described(exc))
            failed.__cause__ = exc  # in-process, unlike the helper, the traceback can come along
            self._ready = failed

    def result(self) -> PreparedBatch:
        ready, self._ready = self._ready, None
        if ready is None:
            raise RuntimeError("InlinePreparer.result: nothing was submitted")
        if isinstance(ready, PrepareFailed):
            raise ready
        return ready

    def discard(self) -> None:
        self._ready = None

    def close(self) -> None:
        self._ready = None


def _send(stream: IO[bytes], value: Any) -> None:
    data = marshal.dumps(value)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the other side closed the pipe")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other side closed the pipe mid-message")
    return marshal.loads(data)  # our own child process (same interpreter), over a private pipe


class PrepareWorker:
    """One helper process and at most one batch in flight; started on first use, restarted if lost."""

    def __init__(self, prepare: Prepare) -> None:
        self._target = f"{prepare.__module__}:{prepare.__qualname__}"
        self._process: subprocess.Popen[bytes] | None = None
        self._in_flight = False

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, self._target],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self._process = process
        return process

    def submit(self, payloads: list[bytes]) -> None:
        """Send a batch to prepare; the previous one's result must have been taken."""
        if self._in_flight:
            raise RuntimeError("PrepareWorker.submit: the previous batch was not taken")
        process = self._process or self._start()
        assert process.stdin is not None
        try:
            _send(process.stdin, payloads)
        except OSError as exc:
            self._lost(exc)
        self._in_flight = True

    def result(self) -> PreparedBatch:
        """The prepared form of the batch submitted last. Raises BackendUnavailable if the helper died."""
        if not self._in_flight or self._process is None or self._process.stdout is None:
            raise RuntimeError("PrepareWorker.result: nothing was submitted")
        self._in_flight = False
        try:
            answer = _receive(self._process.stdout)
        except (EOFError, OSError, ValueError, TypeError) as exc:  # marshal's errors for damaged data
            self._lost(exc)
        if isinstance(answer, str):
            raise PrepareFailed.of(answer)
        undecodable, data = answer
        return PreparedBatch(undecodable, data)

    def discard(self) -> None:
        """Drop the batch in flight, if any (after a failed write the queue delivers it again)."""
        if self._in_flight:
            with contextlib.suppress(BackendUnavailable, PrepareFailed):
                self.result()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _lost(self, exc: BaseException) -> NoReturn:
        code = None if self._process is None else self._process.poll()
        self.close()
        log.warning("processor: the prepare helper process was lost (exit code %s); another starts with "
                    "the next batch", code)
        raise BackendUnavailable(f"prepare helper process lost: {exc!r}") from exc

    def close(self) -> None:
        """Stop the helper (closing its stdin ends its loop) and wait for it briefly."""
        process, self._process = self._process, None
        self._in_flight = False
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def main(target: str) -> None:
    """The helper's loop: read a batch, prepare it, answer; until stdin closes."""
    from logflow.processes import die_with_parent

    die_with_parent()
    # Its lines (payloads set apart, below) go to the processor's stderr: in the processor's format.
    setup_logging()
    module, _, name = target.partition(":")
    prepare: Prepare = getattr(importlib.import_module(module), name)
    # Like the processor: each batch is ~100 k short-lived objects that reference counting frees;
    # the default thresholds would run thousands of pointless young-generation collections.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 1_000)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout is the channel: nothing else may write to it
    while True:
        try:
            payloads = _receive(requests)
        except EOFError:
            return  # the processor closed the pipe or died
        answer: tuple[list[tuple[int, str]], Any] | str
        try:
            prepared = prepare_isolating(prepare, payloads)
            answer = (prepared.undecodable, prepared.data)
        except Exception as exc:  # reported to the processor, which stops with it
            answer = described(exc)
        try:
            _send(answers, answer)
        except OSError:
            return  # the processor went away while this batch was being prepared


if __name__ == "__main__":
    main(sys.argv[1])

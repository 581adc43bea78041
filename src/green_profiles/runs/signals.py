"""Stop signals as interrupts: SIGTERM and SIGHUP end a run the way Ctrl-C does.

A scheduler's ``scancel``, ``timeout``, ``kill`` or a closed terminal send SIGTERM or SIGHUP,
whose default action ends a process on the spot, losing the windows finished since the last
flush (up to a minute of work by default). Raised as :class:`Stopped` (a ``KeyboardInterrupt``)
instead, they unwind through the same ``finally`` blocks as Ctrl-C: finished windows are flushed,
staging files removed, locks released. The command line then exits ``128 + signal``
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), as a shell reports a process killed by it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["STOP_SIGNALS", "Stopped", "exit_status", "stop_signals_as_interrupt", "stop_signals_held"]

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) received, raised where the program was, like Ctrl-C's interrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The exit status of a process ended by ``interrupt``: ``128 +`` its signal (SIGINT's for Ctrl-C)."""
    return 128 + (interrupt.signum if isinstance(interrupt, Stopped) else int(signal.SIGINT))


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise :class:`Stopped`; the previous handlers come back after it.

    Outside the main thread (where Python cannot set handlers) it does nothing.
    """
    def stop(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    with _handling(stop):
        yield


@contextlib.contextmanager
def _handling(handler: Any) -> Iterator[dict[int, Any]]:
    """``handler`` for every stop signal inside the block (the previous handlers, by signal, are yielded and
    come back after it); in a thread other than the main one, where Python cannot set handlers, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield previous
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def stop_signals_held(*, deliver: bool = True) -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP wait; after it, the first one received goes to the handler that
    was in place (``deliver``), or is dropped where the program is already stopping (``deliver=False``).

    For writing a part: a stop that lands inside the write would abort it half-written, and the windows in it
    would be lost (seen under torchrun, which signals a rank again while its finally block flushes).
    Outside the main thread it does nothing.
    """
    received: list[int] = []
    with _handling(lambda signum, frame: received.append(signum)) as previous:
        yield
    if received and deliver:
        handler = previous[received[0]]
        if callable(handler):
            handler(received[0], None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(received[0])

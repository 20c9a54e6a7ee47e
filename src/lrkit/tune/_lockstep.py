"""Run several training runs epoch by epoch in turn, so a trial can be judged on the fold mean.

Each fold's `fit` runs in its own thread, but only one runs at a time: `Stepper.resume` lets a
run go until its next epoch ends (it calls ``pause(value)`` from `fit`'s ``on_epoch``) and waits
for it there. The runs therefore advance in a fixed order, which keeps a trial deterministic
and uses one core, and a pruned trial stops every fold at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Stepper", "Stopped"]


class Stopped(Exception):
    """Raised inside a paused run to end it early (the trial was pruned or interrupted)."""


class Stepper:
    """``fn(pause)`` run one stretch at a time: `resume` returns when it pauses or returns.

    >>> def count(pause):
    ...     for i in range(3):
    ...         pause(i)
    ...     return "done"
    >>> s = Stepper(count)
    >>> s.resume(); s.value
    0
    >>> s.resume(); s.resume(); s.value
    2
    >>> s.resume(); s.done, s.result
    (True, 'done')
    """

    def __init__(self, fn: Callable[[Callable[[Any], None]], Any]) -> None:
        self._fn = fn
        self._go = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self._stop = False
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._started = False
        self.done = False
        self.value: Any = None
        self.result: Any = None
        self.error: BaseException | None = None

    def _main(self) -> None:
        self._go.acquire()
        try:
            if not self._stop:
                self.result = self._fn(self._pause)
        except Stopped:
            pass
        except BaseException as e:  # handed to the caller of resume()
            self.error = e
        finally:
            self.done = True
            self._back.release()

    def _pause(self, value: Any) -> None:
        self.value = value
        self._back.release()
        self._go.acquire()
        if self._stop:
            raise Stopped

    def resume(self) -> None:
        """Let the run go until it pauses or ends; re-raise what it raised."""
        if self.done:
            return
        if not self._started:
            self._started = True
            self._thread.start()
        self._go.release()
        self._back.acquire()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def stop(self) -> None:
        """End a paused run (`Stopped` is raised at its pause) and wait for its thread."""
        if self.done:
            return
        self._stop = True
        if not self._started:
            self.done = True
            return
        self._go.release()
        self._thread.join()
        self.error = None

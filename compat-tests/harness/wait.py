"""Waiting on conditions with a deadline; tests never sleep a fixed time to synchronise."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05


class Timeout(AssertionError):
    pass


class Abort(AssertionError):
    """Raised by a condition when what it waits for can no longer happen (a process died):
    wait_until re-raises it at once instead of treating it as "not yet"."""


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = POLL_INTERVAL_S) -> T:
    """Polls `condition` until it returns a truthy value (returned) or `timeout_s` passes.

    Exceptions raised by the condition count as "not yet" (the last one is reported on timeout),
    except Abort, which ends the wait at once.
    """
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Abort:
            raise
        except Exception as exc:  # noqa: BLE001 - a probe failing is the normal "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise Timeout(f"timed out after {timeout_s:.1f}s waiting for {what}{detail}")
        time.sleep(interval_s)

"""A small memo for reports built on the month-end snapshots.

Delinquency history, vintages and roll rates read every snapshot row (a GROUP BY over accounts × months:
about a second on SQLite for a 100,000-account book with a year of history). The snapshots change only
when end of day closes a month, so each report is kept under lending's `snapshot_state()` — the latest
month end and its row count, a read of a few milliseconds — and computed again only when that changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")

#: Reports kept per app (each is a few hundred rows at most).
ENTRIES_MAX = 64


class ReportCache:
    def __init__(self, entries_max: int = ENTRIES_MAX) -> None:
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._entries_max = entries_max
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value under `key`, computed (outside the lock) on a miss; least recently used entries go first."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                found: T = self._entries[key]
                return found
        value = compute()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._entries_max:
                self._entries.popitem(last=False)
        return value


_LOCK = threading.Lock()


def report_cache(request: Request) -> ReportCache:
    state = request.app.state
    found: ReportCache | None = getattr(state, "console_reports", None)
    if found is None:
        with _LOCK:
            found = getattr(state, "console_reports", None)
            if found is None:
                found = ReportCache()
                state.console_reports = found
    return found

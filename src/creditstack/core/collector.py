"""CPython's cyclic garbage collector around bulk work.

Reference counting frees what bulk work lets go of; the cyclic collector only finds reference cycles. Bulk
paths keep many containers alive until they end, and each survivor counts towards the next collection, so
with the default thresholds the collector walks the growing heap again and again. Both helpers are
process-wide and restore what they changed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector off while the block runs, back on after (if it was on).

    For one batch of a bounded size: a payments batch keeps some twenty containers per request alive until it
    ends (decisions, rows, bodies, events, ledger outcomes); with the collector on, those survivors trigger
    full collections that walk the whole heap several times per batch — measured at about a third of a
    5,000-payment batch on SQLite. Only reference cycles wait for the next collection after it. Another
    thread's work in the meantime is not collected either."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def collections_spaced(thresholds: tuple[int, int, int]) -> Iterator[None]:
    """The collector's thresholds set to `thresholds` while the block runs (CPython's default is 700, 10,
    10): for long bulk work that allocates millions of short-lived containers, where collecting the young
    generation every 700 allocations costs a sixth of the time."""
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*before)

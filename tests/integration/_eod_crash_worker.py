"""Worker process for the end-of-day crash test (run as a script, never collected).

    python _eod_crash_worker.py URL VAR_DIR THROUGH CHUNK_SIZE

Opens the platform and runs end of day through THROUGH (ISO date) with small chunks, printing a line per
committed chunk. The test kills it with SIGKILL at random moments and starts it again.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from creditstack.app.platform import open_platform
from creditstack.core.clock import SystemClock
from creditstack.core.settings import Settings


def main() -> None:
    url, var_dir, through, chunk_size = (
        sys.argv[1],
        Path(sys.argv[2]),
        date.fromisoformat(sys.argv[3]),
        int(sys.argv[4]),
    )
    platform = open_platform(
        Settings(database_url=url, var_dir=var_dir), SystemClock(), migrate_schema=False, eod_chunk_size=chunk_size
    )
    platform.lending.eod.on_chunk = lambda step, chunk, chunks: print(f"chunk {step} {chunk}/{chunks}", flush=True)
    platform.lending.eod.catch_up(through)
    print("done", flush=True)
    platform.close()


if __name__ == "__main__":
    main()

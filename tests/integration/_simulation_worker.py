"""Worker process for the simulation crash test (run as a script, never collected).

    python _simulation_worker.py VAR_DIR SEED CONSUMERS MONTHS

Runs (or resumes) the simulation on SQLite under VAR_DIR, printing a line per finished day and "done"."""

from __future__ import annotations

import sys
from pathlib import Path

from creditstack.core.settings import Settings
from creditstack.simulation.engine import SimulationConfig, open_simulation


def main() -> None:
    var_dir, seed, consumers, months = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    config = SimulationConfig(seed=seed, consumers=consumers, months=months)
    with open_simulation(Settings(var_dir=var_dir), config) as sim:
        sim.run(lambda day: print(f"day {day}", flush=True))
    print("done", flush=True)


if __name__ == "__main__":
    main()

"""Repeated stratified cross-validation of the scoring engine against default baselines.

    .venv/bin/python benchmarks/scoring_cv.py                 # 5×5 CV on Taiwan, German, HMEQ
    .venv/bin/python benchmarks/scoring_cv.py --quick         # 1×3 CV on ≤ 3,000 rows each, under a minute
    .venv/bin/python benchmarks/scoring_cv.py --datasets taiwan

For each data set in ../shared/data/credit (next to the repository), our scorecard and GBM are measured
beside a default LightGBM and a default optbinning scorecard on the same folds (see
`creditstack.scoring.evaluation`). Protected attributes are excluded from every model's inputs. The last
line printed is one JSON object: {"benchmark": "scoring_cv", "figures": {...}, "targets": {...}}; the
target is our best model's mean AUC on Taiwan ≥ the better baseline's mean AUC − 0.005.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "credit"
AUC_TOLERANCE = 0.005

DATASETS: dict[str, dict[str, Any]] = {
    "taiwan": {
        "file": "taiwan_credit_card_default.csv",
        "target": "default.payment.next.month",
        "bad_value": "1",
        "exclude": ["SEX", "AGE", "MARRIAGE"],
    },
    "german": {
        "file": "german_credit.csv",
        "target": "creditability",
        "bad_value": "bad",
        "exclude": ["age_in_years", "personal_status_and_sex"],
    },
    "hmeq": {"file": "hmeq.csv", "target": "BAD", "bad_value": "1", "exclude": []},
    # The simulated population (`creditstack simulate --training-set FILE`): one observation per consumer
    # (a month start drawn with the seed, so no consumer is in a training and a test fold at once), the
    # label from the ground truth (a default episode within twelve months), applicants declined or not and
    # people who never applied alike. The protected attribute and the bookkeeping columns are not inputs.
    "simulated": {
        "file": None,
        "target": "bad_12m",
        "bad_value": "1",
        "exclude": ["consumer", "as_of", "applied_next_month", "observed_90dpd_12m", "female"],
    },
}
SIMULATED_TARGET = "simulated_auc_vs_baseline"


def _one_row_per_consumer(source: Path, target: Path, seed: int) -> int:
    """Keep one observation per consumer of a simulation training set, chosen at random with `seed`."""
    import csv
    import random

    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_consumer: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_consumer.setdefault(row["consumer"], []).append(row)
    rng = random.Random(seed)
    kept = [rng.choice(group) for _, group in sorted(by_consumer.items(), key=lambda kv: int(kv[0]))]
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return len(kept)


def _stratified_sample(
    columns: dict[str, Any], target: str, bad_value: str, rows_max: int, seed: int
) -> dict[str, Any]:
    from sklearn.model_selection import train_test_split

    from creditstack.scoring.columns import encode_target

    labels, _ = encode_target(columns[target], bad_value)
    if len(labels) <= rows_max:
        return columns
    index, _ = train_test_split(np.arange(len(labels)), train_size=rows_max, stratify=labels, random_state=seed)
    index = np.sort(index)
    return {name: values[index] for name, values in columns.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 3 folds on at most 3,000 rows")
    parser.add_argument("--datasets", default="taiwan,german,hmeq,simulated")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--splits", type=int, default=None)
    parser.add_argument("--rows-max", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--simulated", type=Path, default=None, help="a training set from `creditstack simulate --training-set`"
    )
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress

    from creditstack.scoring.columns import read_table
    from creditstack.scoring.evaluation import BASELINES, OUR_MODELS, cross_validate

    repeats = args.repeats or (1 if args.quick else 5)
    splits = args.splits or (3 if args.quick else 5)
    rows_max = args.rows_max or (3000 if args.quick else None)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    console = Console(stderr=True)
    figures: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    started = time.perf_counter()
    with Progress(console=console) as progress:
        for name in names:
            config = DATASETS[name]
            if name == "simulated":
                if args.simulated is None or not args.simulated.is_file():
                    console.print("[yellow]skipping simulated: pass --simulated FILE.csv")
                    continue
                import tempfile

                path = Path(tempfile.mkdtemp(prefix="cs_cv_")) / "simulated.csv"
                _one_row_per_consumer(args.simulated, path, args.seed)
            else:
                path = DATA_DIR / config["file"]
            if not path.is_file():
                console.print(f"[yellow]skipping {name}: {path} not found")
                continue
            columns = read_table(path).columns
            if rows_max:
                columns = _stratified_sample(columns, config["target"], config["bad_value"], rows_max, args.seed)
            task = progress.add_task(f"{name} {repeats}×{splits} CV", total=repeats * splits)
            dataset_started = time.perf_counter()
            result = cross_validate(
                columns,
                config["target"],
                bad_value=config["bad_value"],
                exclude=config["exclude"],
                n_splits=splits,
                n_repeats=repeats,
                seed=args.seed,
                progress=lambda done, _total, _msg, task=task: progress.update(task, completed=done),
            )
            result["seconds"] = round(time.perf_counter() - dataset_started, 1)
            models = result["models"]
            best_ours = max(OUR_MODELS, key=lambda m: models[m]["auc"]["mean"])
            best_base = max(BASELINES, key=lambda m: models[m]["auc"]["mean"])
            result["best_ours"] = best_ours
            result["better_baseline"] = best_base
            result["auc_difference"] = round(models[best_ours]["auc"]["mean"] - models[best_base]["auc"]["mean"], 5)
            figures[name] = result
            if name in ("taiwan", "simulated"):
                targets[f"{name}_auc_vs_baseline"] = {
                    "value": models[best_ours]["auc"]["mean"],
                    "target": round(models[best_base]["auc"]["mean"] - AUC_TOLERANCE, 5),
                    "op": ">=",
                    "model": best_ours,
                    "reasons": models[best_ours]["reasons"],
                }
            console.print(_table_text(name, result))
    figures["config"] = {
        "repeats": repeats,
        "splits": splits,
        "rows_max": rows_max,
        "seed": args.seed,
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps({"benchmark": "scoring_cv", "figures": figures, "targets": targets}))
    return 0


def _table_text(name: str, result: dict[str, Any]) -> str:
    lines = [f"{name}: {result['rows']} rows, bad rate {result['bad_rate']:.3f}, {result['seconds']} s"]
    for model, body in result["models"].items():
        lines.append(
            f"  {model:<18} AUC {body['auc']['mean']:.4f} ± {body['auc']['sd']:.4f}   "
            f"KS {body['ks']['mean']:.4f} ± {body['ks']['sd']:.4f}   "
            f"Brier {body['brier']['mean']:.4f} ± {body['brier']['sd']:.4f}   "
            f"fit {body['fit_seconds']['mean']:.1f} s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

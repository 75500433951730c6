"""Serving speed of the scoring engine: one score with reasons, batch rates, and scores over HTTP.

    .venv/bin/python benchmarks/scoring.py              # Taiwan (30,000 rows), 300,000-row batches, 20 s of HTTP
    .venv/bin/python benchmarks/scoring.py --quick      # 10,000 training rows, 60,000-row batches, 4 s of HTTP
    .venv/bin/python benchmarks/scoring.py --no-http

A scorecard and a GBM are trained on the Taiwan credit-card data (../shared/data/credit, protected attributes
excluded), saved as hashed artefacts and loaded back through `serving.Scorer` (hash-verified), then:

- one score with reasons in-process (`Scorer.score` on a dict of the row's values: checks, cleaning, score,
  PD, up to four reasons with texts), p50/p99 over `--single` rows, each model; baseline in the same run:
  LightGBM's own one-row `Booster.predict` (one thread) and optbinning's `Scorecard.predict_proba` on a
  one-row DataFrame (no reasons either);
- batch: the scorecard with reasons (and without) over `--rows` rows given as numpy columns
  (`Scorer.score_columns`), against optbinning's `Scorecard.predict_proba` (no reasons) on the same rows as a
  DataFrame built beforehand; the GBM's scores only, against LightGBM's `Booster.predict` on the same
  encoded matrix, and its reasons (`pred_contrib`) reported apart; medians of `--repeats` runs;
- HTTP: `POST /v1/scoring/score` with a feature dict, the scorecard (then the GBM) as champion, one uvicorn
  process on SQLite and `--http-clients` closed-loop Python clients (threads, keep-alive) on the same two
  cores; p50/p99 reported, no target.

Targets: one score with reasons p99 ≤ 2 ms for each model; scorecard batch with reasons ≥ 100,000 scores/s.
The last line printed is one JSON object: {"benchmark": "scoring", "figures": {...}, "targets": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data" / "credit" / "taiwan_credit_card_default.csv"
TARGET = "default.payment.next.month"
PROTECTED = ["SEX", "AGE", "MARRIAGE"]
SINGLE_P99_MS_MAX = 2.0
BATCH_PER_S_MIN = 100_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": round(pct(0.50), 4), "p99_ms": round(pct(0.99), 4), "max_ms": round(ordered[-1] * 1000, 4)}


def _latencies(call: Callable[[Any], Any], inputs: list[Any], warmup: int = 200) -> dict[str, float]:
    for item in inputs[:warmup]:
        call(item)
    times = []
    clock = time.perf_counter
    for item in inputs:
        begin = clock()
        call(item)
        times.append(clock() - begin)
    return _percentiles(times) | {"calls": len(inputs)}


def _rate(call: Callable[[], Any], rows: int, repeats: int) -> dict[str, float]:
    call()  # warm-up
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - begin)
    median = statistics.median(seconds)
    return {"rows": rows, "median_s": round(median, 4), "per_s": round(rows / median, 1), "runs": repeats}


def _sample(columns: dict[str, np.ndarray], rows: int, seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    labels = np.asarray(columns[TARGET]).astype(str)
    if len(labels) <= rows:
        return columns
    index, _ = train_test_split(np.arange(len(labels)), train_size=rows, stratify=labels, random_state=seed)
    index = np.sort(index)
    return {name: values[index] for name, values in columns.items()}


def train(columns: dict[str, np.ndarray], workdir: Path, quick: bool) -> dict[str, Path]:
    from creditstack.scoring.evaluation import fit_model
    from creditstack.scoring.registry import save_model

    out = {}
    for kind in ("scorecard", "gbm"):
        params = {"num_leaves_grid": [15], "trees_max": 400} if kind == "gbm" and quick else None
        begin = time.perf_counter()
        result = fit_model(kind, columns, TARGET, bad_value="1", exclude=PROTECTED, params=params)
        save_model(result.model, workdir / kind, training_data={"file": DATA.name}, metrics=result.validation)
        log(f"  trained {kind} in {time.perf_counter() - begin:.1f} s (held-out AUC {result.validation['auc']:.4f})")
        out[kind] = workdir / kind
    return out


def optbinning_baseline(scorer: Any, columns: dict[str, np.ndarray]) -> Any:
    """optbinning's own `Scorecard` on the same inputs as our scorecard, fitted on the same rows."""
    import pandas as pd
    from optbinning import BinningProcess, Scorecard
    from sklearn.linear_model import LogisticRegression

    from creditstack.scoring.scorecard import optbinning_warnings_silenced

    names = list(scorer.input_names)
    frame = pd.DataFrame(scorer.model.preprocess.clean({name: columns[name] for name in names}))
    labels = np.asarray(columns[TARGET]).astype(str) == "1"
    baseline = Scorecard(BinningProcess(names), LogisticRegression())
    with optbinning_warnings_silenced():
        baseline.fit(frame, labels.astype(int))
    return baseline


def run_http(
    workdir: Path,
    artefacts: dict[str, Path],
    rows: list[dict[str, Any]],
    *,
    clients: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    import httpx

    from creditstack.app.platform import open_platform
    from creditstack.core.security import Role
    from creditstack.core.settings import Settings
    from creditstack.scoring.registry import ModelRegistry

    url = f"sqlite:///{workdir / 'http.db'}"
    registry = ModelRegistry(workdir / "models")
    ids = {kind: registry.register(path) for kind, path in artefacts.items()}
    registry.promote(ids["scorecard"], "champion")
    platform = open_platform(Settings(database_url=url, var_dir=workdir))
    _, token = platform.keys.create(Role.SERVICE, "bench", "bench")
    platform.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CREDITSTACK_DATABASE_URL": url, "CREDITSTACK_VAR_DIR": str(workdir)}
    server = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory", "creditstack.app.main:app_factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
        ],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.1)
        for kind in ("scorecard", "gbm"):
            registry.promote(ids[kind], "champion")  # the server picks the new champion up on its next request
            figures[kind] = _http_load(base, token, rows, clients=clients, seconds=seconds, warmup=warmup, kind=kind)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    return figures


def _http_load(
    base: str, token: str, rows: list[dict[str, Any]], *, clients: int, seconds: float, warmup: float, kind: str
) -> dict[str, Any]:
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    models: set[str] = set()
    start_at = time.monotonic() + 0.2
    measure_from = start_at + warmup
    stop_at = measure_from + seconds

    def client(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            while time.monotonic() < start_at:
                time.sleep(0.001)
            while True:
                begin = time.monotonic()
                if begin >= stop_at:
                    return
                response = http.post("/v1/scoring/score", json={"features": rng.choice(rows)})
                end = time.monotonic()
                if begin >= measure_from and end <= stop_at:
                    latencies[n].append(end - begin)
                    if response.status_code != 200:
                        failures[n] += 1
                    else:
                        models.add(response.json()["model_id"].split("-")[0])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [x for per in latencies for x in per]
    if not done:
        raise RuntimeError("no HTTP request completed in the measured window")
    out = {
        "clients": clients,
        "seconds": seconds,
        "requests": len(done),
        "failed": sum(failures),
        "requests_per_s": round(len(done) / seconds, 1),
        "models": sorted(models),
    } | _percentiles(done)
    log(
        f"  http {kind}: {out['requests_per_s']:,.0f} req/s  p50 {out['p50_ms']:.2f} ms  p99 {out['p99_ms']:.2f} ms"
        f"  ({out['failed']} failed, {clients} clients)"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 training rows, small batches, 4 s of HTTP")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-rows", type=int, default=None, help="training rows (default: all; quick 10,000)")
    parser.add_argument("--rows", type=int, default=None, help="rows per batch run (300,000; quick 60,000)")
    parser.add_argument("--single", type=int, default=None, help="single-row scores per model (5,000; quick 1,500)")
    parser.add_argument("--repeats", type=int, default=None, help="batch runs per figure, the median kept (5; quick 3)")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--http-clients", type=int, default=None, help="concurrent HTTP clients (8; quick 4)")
    parser.add_argument("--http-seconds", type=float, default=None, help="measured seconds per model (20; quick 4)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    quick = args.quick
    batch_rows = args.rows or (60_000 if quick else 300_000)
    single = args.single or (1_500 if quick else 5_000)
    repeats = args.repeats or (3 if quick else 5)
    clients = args.http_clients or (4 if quick else 8)
    http_seconds = args.http_seconds or (4.0 if quick else 20.0)

    from creditstack.scoring.columns import read_table
    from creditstack.scoring.gbm import encode
    from creditstack.scoring.scorecard import optbinning_warnings_silenced
    from creditstack.scoring.serving import Scorer

    started = time.perf_counter()
    if not args.data.is_file():
        log(f"data set not found at {args.data} (see ../shared/data/credit/README.md)")
        return 2
    table = read_table(args.data)
    training = _sample(table.columns, args.train_rows or (10_000 if quick else table.rows), args.seed)
    figures: dict[str, Any] = {"config": {"data": args.data.name, "training_rows": len(training[TARGET]),
                                          "batch_rows": batch_rows, "single_rows": single, "repeats": repeats,
                                          "quick": quick}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as scratch:
        workdir = Path(scratch)
        log(f"training on {len(training[TARGET]):,} rows of {args.data.name}")
        artefacts = train(training, workdir, quick)
        scorers = {kind: Scorer.load(path) for kind, path in artefacts.items()}

        # the rows to score: the data set's rows (as numbers), repeated up to the batch size
        names = sorted({name for s in scorers.values() for name in s.input_names})
        numbers = {name: np.asarray(table.columns[name]).astype(np.float64) for name in names}
        reps = -(-batch_rows // table.rows)
        columns = {name: np.tile(values, reps)[:batch_rows] for name, values in numbers.items()}
        rng = np.random.default_rng(args.seed)
        picks = rng.integers(0, table.rows, single)
        dicts = [{name: float(numbers[name][i]) for name in names} for i in picks.tolist()]

        # one score with reasons, in-process
        log("one score with reasons, in-process")
        for kind, scorer in scorers.items():
            figures[f"{kind}_single"] = _latencies(scorer.score, dicts)
            result = scorer.score(dicts[0])
            figures[f"{kind}_single"]["reasons_first_row"] = len(result.reasons)
            measured = figures[f"{kind}_single"]
            log(f"  {kind}: p50 {measured['p50_ms']:.3f} ms  p99 {measured['p99_ms']:.3f} ms")
        gbm = scorers["gbm"].model
        matrix_rows = encode(gbm.features, gbm.preprocess.clean({n: numbers[n][picks] for n in gbm.preprocess.names}))
        one_rows = [matrix_rows[i : i + 1] for i in range(len(matrix_rows))]
        figures["baseline_lightgbm_single"] = _latencies(
            lambda m: gbm.booster.predict(m, raw_score=True, num_threads=1), one_rows
        )
        log(f"  baseline LightGBM Booster.predict, one row: p99 {figures['baseline_lightgbm_single']['p99_ms']:.3f} ms")

        log("fitting optbinning's own Scorecard on the same inputs (the batch baseline)")
        baseline = optbinning_baseline(scorers["scorecard"], training)
        import pandas as pd

        card_names = list(scorers["scorecard"].input_names)
        card_frame = pd.DataFrame(scorers["scorecard"].model.preprocess.clean({n: columns[n] for n in card_names}))
        single_frames = [card_frame.iloc[i : i + 1] for i in range(min(300, single))]
        with optbinning_warnings_silenced():
            figures["baseline_optbinning_single"] = _latencies(baseline.predict_proba, single_frames, warmup=20)
        measured = figures["baseline_optbinning_single"]
        log(f"  baseline optbinning predict_proba, one row: p99 {measured['p99_ms']:.3f} ms")

        # batches
        log(f"batches of {batch_rows:,} rows, median of {repeats}")
        card = scorers["scorecard"]
        figures["scorecard_batch_reasons"] = _rate(lambda: card.score_columns(columns), batch_rows, repeats)
        figures["scorecard_batch_scores"] = _rate(
            lambda: card.score_columns(columns, with_reasons=False), batch_rows, repeats
        )
        with optbinning_warnings_silenced():
            figures["baseline_optbinning_batch"] = _rate(
                lambda: baseline.predict_proba(card_frame), batch_rows, repeats
            )
        gbm_scorer = scorers["gbm"]
        figures["gbm_batch_scores"] = _rate(
            lambda: gbm_scorer.score_columns(columns, with_reasons=False), batch_rows, repeats
        )
        matrix = encode(gbm.features, gbm.preprocess.clean({n: columns[n] for n in gbm.preprocess.names}))
        figures["baseline_lightgbm_batch"] = _rate(
            lambda: gbm.booster.predict(matrix, raw_score=True), batch_rows, repeats
        )
        reason_rows = min(batch_rows, 30_000 if not quick else 10_000)
        subset = {name: values[:reason_rows] for name, values in columns.items()}
        figures["gbm_batch_reasons"] = _rate(lambda: gbm_scorer.score_columns(subset), reason_rows, max(1, repeats - 2))
        figures["baseline_lightgbm_pred_contrib"] = _rate(
            lambda: gbm.booster.predict(matrix[:reason_rows], pred_contrib=True), reason_rows, max(1, repeats - 2)
        )
        for name in ("scorecard_batch_reasons", "scorecard_batch_scores", "baseline_optbinning_batch",
                     "gbm_batch_scores", "baseline_lightgbm_batch", "gbm_batch_reasons",
                     "baseline_lightgbm_pred_contrib"):  # fmt: skip
            log(f"  {name:<32} {figures[name]['per_s']:>14,.0f} rows/s")
        figures["scorecard_batch_vs_optbinning"] = round(
            figures["scorecard_batch_reasons"]["per_s"] / figures["baseline_optbinning_batch"]["per_s"], 2
        )
        figures["gbm_batch_vs_lightgbm"] = round(
            figures["gbm_batch_scores"]["per_s"] / figures["baseline_lightgbm_batch"]["per_s"], 3
        )

        if not args.no_http:
            log(f"HTTP: {clients} clients, 1 s warm-up + {http_seconds:.0f} s per model")
            figures["http"] = run_http(workdir, artefacts, dicts[:500], clients=clients, seconds=http_seconds, warmup=1)
    figures["config"]["seconds"] = round(time.perf_counter() - started, 1)
    figures["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    targets = {
        "scorecard_single_p99_ms": {
            "value": figures["scorecard_single"]["p99_ms"], "target": SINGLE_P99_MS_MAX, "op": "<="
        },
        "gbm_single_p99_ms": {"value": figures["gbm_single"]["p99_ms"], "target": SINGLE_P99_MS_MAX, "op": "<="},
        "scorecard_batch_reasons_per_s": {
            "value": figures["scorecard_batch_reasons"]["per_s"], "target": BATCH_PER_S_MIN, "op": ">="
        },
    }  # fmt: skip
    print(json.dumps({"benchmark": "scoring", "figures": figures, "targets": targets}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scoring on the platform: the feature store, the champion model, real-time and batch scores.

`ScoringService` is the context's public entry for the app, the CLI and lending's score provider:

- `process_events` / `process_all` run the feature store's outbox consumer (`features.FeatureStore`);
- `features(customer_id, as_of)` reads a customer's vector (stored state plus the events the consumer has
  not reached, folded in memory; nothing is written);
- `champion()` is the registry's champion under `models_dir` (`var/models` on the platform), verified by
  hash on load and reloaded when it changes (`serving.ChampionCache`);
- `score_customer` / `score_features` score one customer or one feature dict;
- `population` + `score_pages` score every customer as of a date, from the store when it can serve the date, else
  recomputed from history, a page at a time.
- `registry_models`, `score_stability`, `feature_stability` and `fairness_reports` are the web console's reads:
  the registry's manifests, PSI of stored scores and CSI of stored feature vectors against the champion's
  training baselines (`scoring.metrics`), and the fairness reports saved with `creditstack scoring fairness
  --save` (`fairness_report_path`).

numpy, the registry and the models are imported on first use, so opening the platform stays light.
"""

# ruff: noqa: PLC0415 -- serving (numpy, the model code) is imported on first use: the platform opens without it

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from creditstack.core.clock import Clock
from creditstack.core.db import Database
from creditstack.scoring.errors import AsOfNotServable, CustomerUnknown, ModelNotFound
from creditstack.scoring.features import (
    EVENTS_PAGE,
    FEATURE_NAMES,
    LAG_EVENTS_MAX,
    POPULATION_PAGE,
    FeatureStore,
    FeatureVector,
    json_values,
)

if TYPE_CHECKING:
    from creditstack.scoring.columns import ScoredBatch
    from creditstack.scoring.serving import ChampionCache, Scorer

Source = Literal["auto", "store", "history"]
#: `registry.MANIFEST` and `registry.REGISTRY_FILE`, named here so that the check needs no model code.
MANIFEST_FILE = "manifest.json"
REGISTRY_FILE = "registry.json"
#: Saved reports live in the registry under `reports/`; fairness ones as `fairness-YYYY-MM-DD.json`.
REPORTS_DIR = "reports"
FAIRNESS_REPORT_PREFIX = "fairness-"
#: Most saved fairness reports read (the newest), and the largest file read as one.
FAIRNESS_REPORTS_MAX = 120
REPORT_BYTES_MAX = 1 << 20
#: Most model manifests the registry listing reads (champion and challenger always among them).
REGISTRY_MODELS_MAX = 50


def champion_exists(root: str | Path) -> bool:
    """Whether `root` is a registry with a champion (or a model artefact) — without loading anything."""
    path = Path(root)
    if (path / MANIFEST_FILE).is_file():
        return True
    try:
        state = json.loads((path / REGISTRY_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(state, dict) and state.get("champion"))


def fairness_report_path(root: str | Path, day: date) -> Path:
    """Where a fairness report of `day` is saved in the registry at `root`."""
    return Path(root) / REPORTS_DIR / f"{FAIRNESS_REPORT_PREFIX}{day.isoformat()}.json"


@dataclass(frozen=True, slots=True)
class PopulationPage:
    vectors: list[FeatureVector]
    scores: ScoredBatch
    source: str


class ScoringService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        business_date: Callable[[], date],
        models_dir: Path | None = None,
        currency: str = "CNY",
        lag_events_max: int = LAG_EVENTS_MAX,
    ) -> None:
        self.db = db
        self.clock = clock
        self.business_date = business_date
        self.models_dir = models_dir
        self.store = FeatureStore(db, clock, currency=currency, lag_events_max=lag_events_max)
        self._champion: ChampionCache | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the feature store
    def process_events(self, *, limit: int = EVENTS_PAGE) -> int:
        return self.store.process_events(limit=limit)

    def process_all(self) -> int:
        return self.store.process_all()

    def features(self, customer_id: str, as_of: date | None = None) -> FeatureVector:
        """A customer's vector as of `as_of` (default: the current business date), up to the latest event."""
        return self.store.vector(customer_id, as_of or self.business_date())

    # ------------------------------------------------------------ models
    def has_champion(self) -> bool:
        return self.models_dir is not None and champion_exists(self.models_dir)

    def champion(self) -> Scorer:
        """The champion of the registry at `models_dir`, verified by hash when (re)loaded."""
        from creditstack.scoring.serving import ChampionCache

        if self.models_dir is None:
            raise ModelNotFound("no model registry is configured", field="model")
        with self._lock:
            if self._champion is None:
                self._champion = ChampionCache(self.models_dir)
            return self._champion.get()

    @staticmethod
    def load_model(directory: str | Path) -> Scorer:
        from creditstack.scoring.serving import Scorer

        return Scorer.load(directory)

    # ------------------------------------------------------------ scores
    def score_features(self, features: Mapping[str, Any], *, scorer: Scorer | None = None) -> dict[str, Any]:
        model = scorer or self.champion()
        return model.score(features).to_dict()

    def score_customer(
        self, customer_id: str, *, as_of: date | None = None, scorer: Scorer | None = None
    ) -> dict[str, Any]:
        """Score a customer from the feature store; the answer carries the vector it was scored on."""
        model = scorer or self.champion()
        model.require_inputs(FEATURE_NAMES)
        vector = self.features(customer_id, as_of)
        if not vector.known:
            raise CustomerUnknown(f"no event of customer {customer_id} before {vector.as_of}", field="customer_id")
        result = model.score(vector.values).to_dict()
        return {
            "customer_id": customer_id,
            "as_of": vector.as_of.isoformat(),
            "position": vector.position,
            **result,
            "features": json_values(vector.values),
        }

    def population_source(self, as_of: date, source: Source = "auto") -> str:
        """`store` when the store (brought up to date first) can serve `as_of`, else `history`."""
        if source == "history":
            return "history"
        self.store.process_all()
        latest = self.store.latest_open_date()
        if latest is not None and latest > as_of:
            if source == "store":
                raise AsOfNotServable(
                    f"the store holds events of {latest}, after {as_of}; use the history source", field="as_of"
                )
            return "history"
        return "store"

    def population(
        self, as_of: date, source: str, *, page: int = POPULATION_PAGE
    ) -> tuple[int, Iterator[list[FeatureVector]]]:
        """How many customers, and their vectors as of `as_of` a page at a time, from `store` or `history`."""
        if source == "store":
            return self.store.customers_count(), self.store.population(as_of, page=page)
        everyone = list(self.store.recompute(as_of).values())
        return len(everyone), (everyone[i : i + page] for i in range(0, len(everyone), page))

    def score_pages(
        self, scorer: Scorer, pages: Iterator[list[FeatureVector]], source: str
    ) -> Iterator[PopulationPage]:
        """Score each page of vectors vectorised (numpy columns, one `score_columns` call per page)."""
        import numpy as np

        scorer.require_inputs(FEATURE_NAMES)
        for vectors in pages:
            columns = {
                name: np.fromiter((v.values[name] for v in vectors), dtype=np.float64, count=len(vectors))
                for name in scorer.input_names
            }
            yield PopulationPage(vectors, scorer.score_columns(columns), source)

    # ------------------------------------------------------------ the registry and monitoring (the console's reads)
    def registry_models(self) -> list[dict[str, Any]]:
        """The registry's models from their manifests — read for display, not verified or loaded: the
        champion first, then the challenger, then the others by id (at most `REGISTRY_MODELS_MAX` read).
        Each: role (or None), model id, kind, content hash, training data, validation metrics, notes, and
        `registered_at` (the manifest file's time: when the artefact was copied into the registry — the
        manifest itself records no time)."""
        if self.models_dir is None:
            return []
        root = Path(self.models_dir)
        if (root / MANIFEST_FILE).is_file():  # a single artefact configured as the registry: it is the champion
            found = _manifest_summary(root, "champion")
            return [found] if found is not None else []
        try:
            state = json.loads((root / REGISTRY_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            state = {}
        role_of: dict[str, str] = {}
        for role in ("challenger", "champion"):  # the champion's role wins if one model holds both
            if isinstance(state, dict) and state.get(role):
                role_of[str(state[role])] = role
        models = root / "models"
        listed = models.iterdir() if models.is_dir() else iter(())
        ids = sorted(p.name for p in listed if p.is_dir() and not p.name.startswith("."))  # not a staging copy
        ordered = sorted(role_of, key=lambda model_id: role_of[model_id] != "champion")
        ordered += [model_id for model_id in ids if model_id not in role_of]
        out = []
        for model_id in ordered[:REGISTRY_MODELS_MAX]:
            if Path(model_id).name != model_id or model_id in (".", ".."):
                continue  # an id is a directory name, never a path
            found = _manifest_summary(models / model_id, role_of.get(model_id))
            if found is not None:
                out.append(found)
        return out

    def score_stability(self, score_counts: Mapping[int, int], *, scorer: Scorer | None = None) -> dict[str, Any]:
        """PSI of the scores `score_counts` (score → how many) against the training baseline of `scorer` (the
        champion by default): `scoring.metrics.psi` over `metrics.distribution` in the baseline's bins, rounded
        as `stability_report` rounds it, and its status (0.10 watch, 0.25 act). `psi` None without a baseline."""
        import numpy as np

        from creditstack.scoring.metrics import distribution, psi, stability_status

        model = scorer or self.champion()
        base = model.model.baseline.get("score")
        rows = sum(score_counts.values())
        if not base or rows == 0:
            return {"rows": rows, "psi": None, "status": None}
        scores = np.repeat(
            np.fromiter(score_counts.keys(), dtype=np.float64, count=len(score_counts)),
            np.fromiter(score_counts.values(), dtype=np.int64, count=len(score_counts)),
        )
        value = psi(base["proportions"], distribution(base, scores))
        return {"rows": rows, "psi": round(value, 6), "status": stability_status(value)}

    def feature_stability(
        self, vectors: Sequence[Mapping[str, Any]], *, scorer: Scorer | None = None
    ) -> dict[str, dict[str, Any]]:
        """CSI of each input of `scorer` (the champion by default) over stored feature vectors (feature name →
        number or None, as lending keeps them with each decision) against its training baselines: the model's
        own cleaning, then `metrics.psi` over `metrics.distribution` per feature, as `stability_report` does;
        worst first. Empty without vectors or baselines."""
        from creditstack.scoring.metrics import distribution, psi, stability_status

        model = scorer or self.champion()
        bases = model.model.baseline.get("features") or {}
        if not vectors or not bases:
            return {}
        names = [name for name in model.input_names if name in bases]
        cleaned = model.model.preprocess.clean({name: [v.get(name) for v in vectors] for name in names})
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            value = psi(bases[name]["proportions"], distribution(bases[name], cleaned[name]))
            out[name] = {"csi": round(value, 6), "status": stability_status(value)}
        return dict(sorted(out.items(), key=lambda item: -item[1]["csi"]))

    def fairness_reports(self, *, limit: int = FAIRNESS_REPORTS_MAX) -> dict[str, Any]:
        """The fairness reports saved in the registry (`creditstack scoring fairness --save`), oldest first:
        the newest `limit` by the date in their names, each with its `report_date`. Files that are not a
        JSON object of at most `REPORT_BYTES_MAX` bytes are listed by name under `unreadable`, not raised."""
        directory = None if self.models_dir is None else Path(self.models_dir) / REPORTS_DIR
        if directory is None or not directory.is_dir():
            return {"reports": [], "unreadable": []}
        dated = []
        for path in directory.glob(f"{FAIRNESS_REPORT_PREFIX}*.json"):
            try:
                day = date.fromisoformat(path.stem[len(FAIRNESS_REPORT_PREFIX) :])
            except ValueError:
                continue
            dated.append((day, path))
        reports, unreadable = [], []
        for day, path in sorted(dated)[-limit:]:
            try:
                if path.stat().st_size > REPORT_BYTES_MAX:
                    raise ValueError("too large")
                body = json.loads(path.read_text("utf-8"))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError):
                unreadable.append(path.name)
                continue
            reports.append(body | {"report_date": day.isoformat()})
        return {"reports": reports, "unreadable": unreadable}


def _manifest_summary(directory: Path, role: str | None) -> dict[str, Any] | None:
    path = directory / MANIFEST_FILE
    try:
        if path.stat().st_size > REPORT_BYTES_MAX:
            return None
        manifest = json.loads(path.read_text("utf-8"))
        registered = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    return {
        "role": role,
        "model_id": manifest.get("model_id"),
        "kind": manifest.get("kind"),
        "content_sha256": manifest.get("content_sha256"),
        "training_data": manifest.get("training_data") or {},
        "metrics": manifest.get("metrics") or {},
        "scale": manifest.get("scale") or {},
        "notes": manifest.get("notes") or [],
        "created_with": manifest.get("created_with"),
        "registered_at": registered,
    }

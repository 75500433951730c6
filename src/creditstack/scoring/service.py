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

numpy, the registry and the models are imported on first use, so opening the platform stays light.
"""

# ruff: noqa: PLC0415 -- serving (numpy, the model code) is imported on first use: the platform opens without it

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
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

"""Wiring of the platform service: its database, clock and context services, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from creditstack.colending.service import ColendingService
from creditstack.core import business_date, migrate
from creditstack.core.apikeys import ApiKeys
from creditstack.core.clock import Clock, SystemClock
from creditstack.core.db import Database
from creditstack.core.security import PiiVault, load_vault
from creditstack.core.settings import Settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.service import SERVICE, LedgerService
from creditstack.lending.ports import FundingAllocator, ScoreProvider
from creditstack.lending.service import LendingService
from creditstack.payments.domain import BankRail
from creditstack.payments.rail import SimulatedRail
from creditstack.payments.service import PaymentsService
from creditstack.scoring.provider import ModelScoreProvider
from creditstack.scoring.service import ScoringService


@dataclass
class Platform:
    settings: Settings
    db: Database
    clock: Clock
    keys: ApiKeys
    ledger: LedgerService
    payments: PaymentsService
    lending: LendingService
    colending: ColendingService
    rail: BankRail
    scoring: ScoringService

    def close(self) -> None:
        self.ledger.close()
        self.db.dispose()


def open_platform(
    settings: Settings,
    clock: Clock | None = None,
    *,
    migrate_schema: bool = True,
    rail: BankRail | None = None,
    vault: PiiVault | None = None,
    score_provider: ScoreProvider | None = None,
    funding_allocator: FundingAllocator | None = None,
    eod_chunk_size: int | None = None,
) -> Platform:
    """Open (and on first use create) the platform database, and set its business date if unset.

    The bank rail defaults to the simulated one (the embedded default has no bank to talk to)."""
    url = settings.platform_database_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if migrate_schema:
        migrate.upgrade(url, "platform")
    clock = clock or SystemClock()
    db = Database(url)
    db.run(lambda conn: business_date.initialise(conn, PLATFORM_CORE, SERVICE, settings.timezone, clock))
    ledger = LedgerService(db, clock, batch_entries_max=settings.ledger_batch_entries_max)
    if rail is None:
        rail = SimulatedRail(business_date=ledger.business_date)
    payments = PaymentsService(db, clock, ledger, vault or load_vault(settings.var_dir), rail)
    colending = ColendingService(db, clock, ledger, payments, rule_sets=settings.policy_rule_sets)
    scoring = ScoringService(db, clock, business_date=ledger.business_date, models_dir=settings.var_dir / "models")
    if score_provider is None and scoring.has_champion():  # a champion model decides; else the rules do
        score_provider = ModelScoreProvider(scoring)
    lending = LendingService(
        db,
        clock,
        ledger,
        payments,
        rule_sets=settings.policy_rule_sets,
        score_provider=score_provider,
        funding_allocator=funding_allocator or colending.allocator,
        eod_chunk_size=eod_chunk_size,
    )
    lending.ensure_default_products()
    return Platform(
        settings=settings,
        db=db,
        clock=clock,
        keys=ApiKeys(db, PLATFORM_CORE, clock),
        ledger=ledger,
        payments=payments,
        lending=lending,
        colending=colending,
        rail=rail,
        scoring=scoring,
    )

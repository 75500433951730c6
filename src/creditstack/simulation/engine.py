"""The daily driver: the synthetic economy acting on the platform through its services, day by day.

A simulated day, in order:
1. plan: read what borrowers owe now (`lending.amounts_due`, one read) and decide who pays what today;
   the plan is stored (`SimulationStore.save_plan`) before anything is sent;
2. one batch (`Database.batch`: one transaction, a savepoint per operation) of the day's operations, kind
   by kind: new consumers register and open wallets; incomes arrive (top-ups over the bank rail); bills
   are paid (some late); purchases at merchants from the wallet or on the credit line; applications for
   loans and lines (the platform decides; approved offers are mostly taken); repayments and recoveries;
3. the day's new parties, accounts, applications and counters are recorded in the simulation store;
4. end of day (`lending.eod.run`), co-lending settlement, and the month-end hooks (the bureau furnishing
   and the supervisory returns of later issues: no-ops now); then the day is marked done.

Every random draw is keyed by (seed, stream, consumer, day) and every idempotency key by (seed, day,
consumer, action), so a repeated or resumed run sends the same requests with the same keys: work the
platform already did is answered from its stored outcomes, and the economy comes out the same.
Business rejections (a wallet short of money, a limit reached, an application declined) are outcomes
the summary counts, as a real client would see them.
"""

from __future__ import annotations

import calendar
import math
import time as time_module
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from creditstack.app.platform import Platform, open_platform
from creditstack.colending.service import Agreement
from creditstack.core.clock import FixedClock
from creditstack.core.collector import collections_spaced
from creditstack.core.errors import CreditstackError
from creditstack.core.money import CNY, Money
from creditstack.core.settings import Settings
from creditstack.lending.repayments import Repayment
from creditstack.payments.domain import (
    ONBOARDING_BATCH_MAX,
    PAYMENT_BATCH_MAX,
    BillPayment,
    Income,
    MerchantPayment,
    Onboarding,
    PaymentRequest,
    TopUp,
)
from creditstack.simulation import population as pop
from creditstack.simulation import rng
from creditstack.simulation.store import DayRecord, SimulationStore

MEMBER = "simulation"
CURRENCY = "CNY"
#: Streams of per-day draws (static ones live in population.py).
S_BUY_COUNT, S_BUY_CATEGORY, S_BUY_MERCHANT, S_BUY_AMOUNT, S_BUY_LINE = 200, 210, 220, 230, 240
S_INCOME, S_IRREGULAR, S_BILL_LATE, S_BILL_DAYS, S_BILL_AMOUNT = 300, 310, 320, 330, 340
S_APPLY, S_PRODUCT, S_AMOUNT, S_TERM, S_TAKE = 400, 410, 420, 430, 440
S_PAY_LATE, S_PAY_DAYS, S_PAY_FULL, S_PARTIAL, S_RECOVER, S_SOURCE = 500, 510, 520, 530, 540, 550
#: At most this many purchases a consumer makes in a day.
PURCHASES_PER_DAY_MAX = 3
#: Days a declined or served applicant waits before applying again.
REAPPLY_DAYS = 90
#: Share of an approved offer's takers.
TAKE_UP = 0.9
#: Share of income moved into the wallet (above what the consumer plans to spend there).
WALLET_BUFFER = 0.12
#: How much of income arrives in a month with a job loss and with an illness.
SHOCK_INCOME = {1: 0.15, 2: 0.6}
BUSINESS_HOUR = time(9, 0)


class SimulationOutOfStep(CreditstackError):
    """The platform's business date is not the day the simulation store says comes next."""

    code = "simulation.out_of_step"
    status = 409


class MonthEndHook(Protocol):
    """Work the economy does at each month end after the platform's end of day."""

    @property
    def name(self) -> str: ...

    def __call__(self, platform: Platform, month_end: date) -> None: ...


@dataclass(frozen=True, slots=True)
class BureauFurnishing:
    """The platform's monthly Metro 2 furnishing to the credit bureau — arrives with the bureau issue."""

    name: str = "bureau_furnishing"

    def __call__(self, platform: Platform, month_end: date) -> None:
        return None


@dataclass(frozen=True, slots=True)
class SupervisoryReturns:
    """The platform's monthly supervisory returns — arrive with the supervision issue."""

    name: str = "supervisory_returns"

    def __call__(self, platform: Platform, month_end: date) -> None:
        return None


DEFAULT_HOOKS: tuple[MonthEndHook, ...] = (BureauFurnishing(), SupervisoryReturns())


DEFAULT_SEED = 20261204


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    seed: int = DEFAULT_SEED
    consumers: int = 2_000
    months: int = 12
    start: date = date(2026, 1, 1)
    #: Keep each month start's feature vectors of every consumer (the scoring feature store's, as of that
    #: date) in the simulation store, for training and judging models against the ground truth.
    training_snapshots: bool = False

    @property
    def end(self) -> date:
        """The last simulated day: the day before `start` plus `months` calendar months."""
        return add_months(self.start, self.months) - timedelta(days=1)


def add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def business_instant(day: date, timezone: str) -> datetime:
    """09:00 on `day` in the platform's time zone, in UTC: the simulation clock's time of day."""
    return datetime.combine(day, BUSINESS_HOUR, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


@dataclass
class _Day:
    """What a day's operations produced, recorded when the batch has committed."""

    day: date
    counts: Counter[str] = field(default_factory=Counter)
    amounts: Counter[str] = field(default_factory=Counter)
    parties: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    applications: list[dict[str, Any]] = field(default_factory=list)

    def count(self, name: str, amount_minor: int = 0) -> None:
        self.counts[name] += 1
        self.amounts[name] += amount_minor


class Simulation:
    def __init__(
        self,
        platform: Platform,
        store: SimulationStore,
        config: SimulationConfig,
        clock: FixedClock,
        *,
        hooks: Sequence[MonthEndHook] = DEFAULT_HOOKS,
    ) -> None:
        self.platform = platform
        self.store = store
        self.config = config
        self.clock = clock
        self.hooks = tuple(hooks)
        run = store.open_run(config.seed, config.consumers, config.months, config.start)
        self.population = pop.build(config.seed, config.consumers, config.start, run.months)
        self.merchants: dict[int, str] = {}
        self.billers: dict[int, str] = {}
        self.consumers: dict[int, tuple[str, str]] = {}
        self.accounts: dict[int, list[tuple[str, str]]] = defaultdict(list)  # consumer → [(ref, kind)]
        self.account_owner: dict[str, int] = {}
        self.last_applied: dict[int, date] = {}
        self.worst: dict[str, tuple[int, date | None]] = {}
        self.closed: set[str] = set()
        self.phase_seconds: dict[str, float] = defaultdict(float)
        self.open_until: dict[str, date] = {}  # a loan is taken as running to its term (lines: for ever)
        self._load()

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Time a phase of the day (for the benchmark; never part of the summary, which must not vary)."""
        started = time_module.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] += time_module.perf_counter() - started

    def showcase_borrower(self) -> str | None:
        """A consumer with a loan and a line if there is one (else any borrower): the demo's consumer login."""
        both = [n for n, held in sorted(self.accounts.items()) if {k for _, k in held} == {"loan", "line"}]
        pick = both or [n for n, held in sorted(self.accounts.items()) if held]
        return self.consumers[pick[0]][0] if pick else None

    # ------------------------------------------------------------ state

    def _load(self) -> None:
        for number, (customer, wallet) in self.store.parties("consumer").items():
            assert wallet is not None
            self.consumers[number] = (customer, wallet)
        self.merchants = {n: w for n, (_, w) in self.store.parties("merchant").items() if w}
        self.billers = {n: w for n, (_, w) in self.store.parties("biller").items() if w}
        for row in self.store.accounts():
            self.accounts[row.consumer].append((row.ref, row.kind))
            self.account_owner[row.ref] = row.consumer
            self.worst[row.ref] = (row.worst_dpd, row.reached_90_on)
            if row.term_months is not None:
                self.open_until[row.ref] = add_months(row.opened_on, row.term_months)
            if row.closed:
                self.closed.add(row.ref)
        for row in self.store.applications():
            previous = self.last_applied.get(row.consumer)
            if previous is None or row.day > previous:
                self.last_applied[row.consumer] = row.day

    def key(self, day: date, consumer: int | str, action: str) -> str:
        return f"sim:{self.config.seed}:{day.isoformat()}:{consumer}:{action}"

    # ------------------------------------------------------------ set-up

    def setup(self) -> None:
        """Partner banks, merchants and billers (idempotent: keyed registrations), and the ground truth."""
        colending = self.platform.colending
        known = {p["partner_id"] for p in colending.list_partners()}
        for n, (name, capital, rate, (low, high), cap) in enumerate(pop.PARTNER_BANKS):
            if f"simbank{n}" in known:
                continue
            colending.register_partner(
                name=name,
                member=f"sim-bank-{n}",
                currency=CURRENCY,
                net_tier1_capital_minor=capital * 100,
                total_loans_minor=capital * 100 * 8,
                agreement=Agreement(
                    products=("cash-cny", "line-cny"),
                    share_min_bps=low,
                    share_max_bps=high,
                    exposure_cap_minor=cap * 100,
                    score_floor=560,
                    term_months_max=24,
                    bank_rate=Decimal(rate),
                ),
                partner_id=f"simbank{n}",
            )
        rows: list[dict[str, Any]] = []
        pay = self.platform.payments
        number = 0
        for mcc, label, _, fee_bps in pop.CATEGORIES:
            for j in range(pop.MERCHANTS_PER_CATEGORY):
                if number not in self.merchants:
                    customer = pay.register_customer(
                        kind="merchant",
                        legal_name=f"{label.title()} {j + 1}",
                        merchant_category=mcc,
                        fee_bps=fee_bps,
                        member=MEMBER,
                        key=f"sim:{self.config.seed}:merchant:{number}",
                    )["id"]
                    wallet = pay.open_wallet(
                        customer, CURRENCY, member=MEMBER, key=f"sim:{self.config.seed}:merchant:{number}:wallet"
                    )["id"]
                    self.merchants[number] = wallet
                    rows.append(self._party("merchant", number, customer, wallet, self.config.start))
                number += 1
        for number, (name, _, _, _) in enumerate(pop.BILLERS):
            if number not in self.billers:
                customer = pay.register_customer(
                    kind="biller",
                    legal_name=name,
                    reference_pattern=r"\d{10}",
                    member=MEMBER,
                    key=f"sim:{self.config.seed}:biller:{number}",
                )["id"]
                wallet = pay.open_wallet(
                    customer, CURRENCY, member=MEMBER, key=f"sim:{self.config.seed}:biller:{number}:wallet"
                )["id"]
                self.billers[number] = wallet
                rows.append(self._party("biller", number, customer, wallet, self.config.start))
        self.store.save_parties(rows)
        pay.ensure_house_accounts(CURRENCY)
        for code in self.platform.lending.products():
            self.platform.lending.gl_accounts(code)
        if not self.store.has_truth():
            self.store.save_truth(self._truth())

    @staticmethod
    def _party(kind: str, number: int, customer: str, wallet: str | None, joined: date) -> dict[str, Any]:
        return {"kind": kind, "number": number, "customer_id": customer, "wallet_id": wallet, "joined_on": joined}

    def _truth(self) -> list[dict[str, Any]]:
        p = self.population
        rows = []
        for i in range(p.size):
            shocks = [[m, "job_loss" if k == 1 else "illness"] for m, k in enumerate(p.shock[i].tolist()) if k]
            dm = int(p.default_month[i])
            reason = None
            if dm < p.months:
                kind = int(p.shock[i, dm])
                reason = "job_loss" if kind == 1 else "illness" if kind == 2 else "latent"
            rows.append(
                {
                    "consumer": i,
                    "segment": pop.SEGMENTS[int(p.segment[i])].name,
                    "risk": round(float(p.risk[i]), 6),
                    "female": bool(p.female[i]),
                    "default_month": dm if dm < p.months else None,
                    "default_reason": reason,
                    "shock_months": shocks,
                }
            )
        return rows

    # ------------------------------------------------------------ the run

    def days(self) -> list[date]:
        """The days still to simulate."""
        run = self.store.run()
        first = self.config.start if run is None or run.last_day_done is None else run.last_day_done + timedelta(1)
        return [first + timedelta(days=n) for n in range((self.config.end - first).days + 1)]

    def run(self, on_day: Callable[[date], None] | None = None) -> None:
        self.setup()
        with collections_spaced(GC_THRESHOLDS):
            for day in self.days():
                self.run_day(day)
                if on_day is not None:
                    on_day(day)

    def run_day(self, day: date) -> None:
        run = self.store.run()
        assert run is not None
        business_date = self.platform.ledger.business_date()
        self.clock.set(business_instant(day, self.platform.settings.timezone))
        if run.batch_done is None or run.batch_done < day:
            if business_date != day:
                raise SimulationOutOfStep(
                    f"the platform's business date is {business_date}, the simulation's day {day}: "
                    "a platform and a simulation store of different runs?"
                )
            plan = self.store.plan(day)
            if plan is None:
                with self._phase("plan"):
                    plan = self._plan(day)
                self.store.save_plan(day, plan)
            today = _Day(day)
            with self.platform.db.batch():
                self._operate(day, plan, today)
            touched = set()
            for ref, dpd, _ in plan_positions(plan):
                worst, reached = self.worst.get(ref, (0, None))
                if dpd > worst:
                    self.worst[ref] = (dpd, reached or (day if dpd >= 90 else None))
                    touched.add(ref)
            self.store.record_batch(
                DayRecord(
                    day=day,
                    parties=today.parties,
                    accounts=today.accounts,
                    applications=today.applications,
                    worst_dpd={ref: self.worst[ref] for ref in touched},
                    closed=[],
                    counts=today.counts,
                    amounts=today.amounts,
                )
            )
        if self.platform.ledger.business_date() == day:
            with self._phase("end_of_day"):
                self.platform.lending.eod.run()
        with self._phase("settlement"):
            self.platform.colending.settle()
        with self._phase("features"):
            self.platform.scoring.process_all()
        if (day + timedelta(days=1)).day == 1:
            for hook in self.hooks:
                with self._phase(hook.name):
                    hook(self.platform, day)
            if self.config.training_snapshots:
                with self._phase("training_snapshots"):
                    self._snapshot_features(day + timedelta(days=1))
        self.store.finish_day(day)

    def _snapshot_features(self, as_of: date) -> None:
        """Every registered consumer's feature vector as of `as_of` from the scoring feature store."""
        number = {customer: n for n, (customer, _) in self.consumers.items()}
        rows: list[dict[str, Any]] = []
        _, pages = self.platform.scoring.population(as_of, "store")
        for page in pages:
            for vector in page:
                n = number.get(vector.customer_id)
                if n is None:
                    continue
                values = {k: (None if math.isnan(v) else v) for k, v in vector.values.items()}  # NaN → null
                rows.append({"as_of": as_of, "consumer": n, "customer_id": vector.customer_id, "features": values})
        self.store.save_feature_rows(as_of, rows)

    # ------------------------------------------------------------ planning (reads the platform)

    def _plan(self, day: date) -> list[Any]:
        """What each borrower with something due does today: [[ref, dpd, amount, source, action], …] with
        action `repay`, `recover` (collections on a charged-off account), `wait` (pays late), `default` (does
        not pay) or `charged_off`; every account read is in the plan (its days past due are tracked)."""
        p = self.population
        month = p.month_of(day)
        positions: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.platform.lending.amounts_due(after=after, limit=10_000)
            positions += page
            if len(page) < 10_000:
                break
            after = page[-1]["position"]
        plan: list[Any] = []
        owners = np.array([self.account_owner.get(pos["account_id"], -1) for pos in positions], dtype=np.int64)
        known = owners >= 0
        ids = np.where(known, owners, 0).astype(np.uint64)
        late_u = rng.uniform(p.seed, S_PAY_LATE, ids, month)
        late_days = 1 + (rng.keyed(p.seed, S_PAY_DAYS, ids, month) % np.uint64(25)).astype(np.int64)
        full_u = rng.uniform(p.seed, S_PAY_FULL, ids, month)
        partial_u = rng.uniform(p.seed, S_PARTIAL, ids, day.toordinal())
        recover_u = rng.uniform(p.seed, S_RECOVER, ids, day.toordinal())
        external = rng.uniform(p.seed, S_SOURCE, ids) < 0.6
        risk = p.risk[ids.astype(np.int64)] if len(ids) else np.zeros(0)
        shock = p.in_shock(month)[ids.astype(np.int64)] if len(ids) else np.zeros(0, dtype=np.int8)
        defaulted = p.defaulted(month)[ids.astype(np.int64)] if len(ids) else np.zeros(0, dtype=bool)
        on_time = late_u < 1.0 / (1.0 + np.exp(-(2.6 - 1.4 * risk - 1.2 * (shock > 0))))
        for k, pos in enumerate(positions):
            ref, dpd = pos["account_id"], pos["days_past_due"]
            if not known[k]:
                continue
            source = "external" if external[k] else "wallet"
            if pos["status"] == "charged_off":
                if day.day == 1 and recover_u[k] < 0.04:
                    amount = max(1, pos["unrecovered_minor"] * 3 // 10)
                    plan.append([ref, dpd, amount, "external", "recover"])
                else:
                    plan.append([ref, dpd, 0, source, "charged_off"])
                continue
            due = pos["due_minor"]
            if defaulted[k]:
                if partial_u[k] < 0.01:  # a token payment now and then
                    plan.append([ref, dpd, max(1, due // 10), source, "repay"])
                else:
                    plan.append([ref, dpd, 0, source, "default"])
                continue
            wait = 0 if on_time[k] else int(late_days[k])
            if dpd < wait and dpd < 60:
                plan.append([ref, dpd, 0, source, "wait"])
                continue
            amount = due
            if pos["kind"] == "line" and p.transactor[owners[k]] and full_u[k] < 0.9:
                amount = max(due, pos["statement_remaining_minor"])
            plan.append([ref, dpd, amount, source, "repay"])
        return plan

    # ------------------------------------------------------------ the day's operations

    def _operate(self, day: date, plan: list[Any], today: _Day) -> None:
        p = self.population
        offset = (day - self.config.start).days
        month = p.month_of(day)
        with self._phase("register"):
            self._register(day, offset, today)
        active = np.array(sorted(self.consumers), dtype=np.int64)
        if len(active):
            with self._phase("incomes"):
                self._incomes(day, month, active, today)
            with self._phase("bills"):
                self._bills(day, month, active, today)
            with self._phase("purchases"):
                self._purchases(day, month, active, today)
            with self._phase("applications"):
                self._applications(day, month, active, today)
        with self._phase("repayments"):
            self._repayments(day, plan, today)

    def _register(self, day: date, offset: int, today: _Day) -> None:
        """The day's joiners register and open their wallets (`register_batch`: one call per
        `ONBOARDING_BATCH_MAX` of them, each answered as `register_customer` then `open_wallet` would answer
        it), then bring their opening top-ups."""
        p = self.population
        pay = self.platform.payments
        joining = [n for n in np.nonzero(p.join_day == offset)[0].tolist() if n not in self.consumers]
        income_as_of = self.config.start - timedelta(days=1)
        openings: list[tuple[str, PaymentRequest]] = []
        for start in range(0, len(joining), ONBOARDING_BATCH_MAX):
            chunk = joining[start : start + ONBOARDING_BATCH_MAX]
            requests = [
                Onboarding(
                    key=self.key(day, n, "register"),
                    wallet_key=self.key(day, n, "wallet"),
                    legal_name=p.name(n),
                    national_id=p.national_id(n),
                    date_of_birth=p.birth[n],
                    currency=CURRENCY,
                    phone=f"+86-13{n:09d}",
                    kyc_tier=2 if p.segment[n] != 2 else 1,
                    incomes=(Income(income_as_of, Money(int(p.income_monthly_minor[n]) * 12, CNY)),),
                )
                for n in chunk
            ]
            for n, result in zip(chunk, pay.register_batch(requests, member=MEMBER), strict=True):
                customer, wallet = result.customer_id, result.wallet_id
                if customer is None or wallet is None:
                    today.count(f"register:error:{result.error_code}")
                    continue
                self.consumers[n] = (customer, wallet)
                today.parties.append(self._party("consumer", n, customer, wallet, day))
                today.count("register:completed")
                opening = int(p.income_monthly_minor[n]) // 2 // 100 * 100  # what they bring: half a month's pay
                openings.append(
                    (
                        "opening_top_up",
                        TopUp(
                            key=self.key(day, n, "opening-top-up"),
                            wallet_id=wallet,
                            amount=Money(opening, CNY),
                            bank_account_token=f"simbank{n}",
                        ),
                    )
                )
        self._submit(today, openings)

    def _incomes(self, day: date, month: int, active: np.ndarray, today: _Day) -> None:
        p = self.population
        ids = active.astype(np.uint64)
        segment = p.segment[active]
        payday = p.payday[active]
        monthly = p.income_monthly_minor[active].astype(np.float64)
        shock = p.in_shock(month)[active]
        factor = np.where(shock == 1, SHOCK_INCOME[1], np.where(shock == 2, SHOCK_INCOME[2], 1.0))
        noise = 1.0 + 0.03 * rng.normal(p.seed, S_INCOME, ids, day.toordinal())
        amount = monthly * factor * noise
        pays = np.zeros(len(active), dtype=bool)
        monthly_payers = (segment == 0) | (segment == 2)
        pays |= monthly_payers & (payday == day.day)
        weekly = segment == 1
        pays |= weekly & (payday == day.weekday())
        amount = np.where(
            weekly, amount * 12 / 52 * (0.6 + 0.8 * rng.uniform(p.seed, S_INCOME + 1, ids, day.toordinal())), amount
        )
        irregular = segment == 3
        takings = rng.uniform(p.seed, S_IRREGULAR, ids, day.toordinal()) < 3 / 30
        pays |= irregular & takings
        amount = np.where(
            irregular, amount / 3 * np.exp(0.5 * rng.normal(p.seed, S_IRREGULAR + 1, ids, day.toordinal())), amount
        )
        into_wallet = np.minimum(1.0, p.spend_share[active] + WALLET_BUFFER + 0.04)
        amount_minor = np.rint(amount * into_wallet / 100).astype(np.int64) * 100  # whole yuan
        batch: list[tuple[str, PaymentRequest]] = []
        for k in np.nonzero(pays & (amount_minor > 0))[0].tolist():
            n = int(active[k])
            batch.append(
                (
                    "income",
                    TopUp(
                        key=self.key(day, n, "income"),
                        wallet_id=self.consumers[n][1],
                        amount=Money(int(amount_minor[k]), CNY),
                        bank_account_token=f"simbank{n}",
                    ),
                )
            )
        self._submit(today, batch)

    def _bills(self, day: date, month: int, active: np.ndarray, today: _Day) -> None:
        p = self.population
        ids = active.astype(np.uint64)
        batch: list[tuple[str, PaymentRequest]] = []
        for b, (_, _, issue_day, due_days) in enumerate(pop.BILLERS):
            for back in (0, 1):  # this month's bill, and last month's paid late
                bill_month = month - back
                if bill_month < 0:
                    continue
                year, mon = divmod(self.config.start.month - 1 + bill_month, 12)
                issued = date(self.config.start.year + year, mon + 1, issue_day)
                due = issued + timedelta(days=due_days)
                shock = p.in_shock(bill_month)[active]
                defaulted = p.defaulted(bill_month)[active]
                x = -2.6 + 1.4 * p.risk[active] + 1.3 * (shock > 0) + 1.5 * defaulted
                late = rng.uniform(p.seed, S_BILL_LATE + b, ids, bill_month) < 1.0 / (1.0 + np.exp(-x))
                draw = rng.keyed(p.seed, S_BILL_DAYS + b, ids, bill_month)
                early = (draw % np.uint64(6)).astype(np.int64)
                late_by = 1 + (draw % np.uint64(20)).astype(np.int64)
                shift = np.where(late, late_by, -early)
                pay_today = p.bills[active, b] & ((due - day).days == -shift)
                joined_before = p.join_day[active] <= (issued - self.config.start).days
                pay_today &= joined_before
                if not pay_today.any():
                    continue
                noise = 1.0 + 0.15 * rng.normal(p.seed, S_BILL_AMOUNT + b, ids, bill_month)
                amounts = np.maximum(100, np.rint(p.bill_amount_minor[active, b] * np.clip(noise, 0.5, 2.0))).astype(
                    np.int64
                )
                for k in np.nonzero(pay_today)[0].tolist():
                    n = int(active[k])
                    batch.append(
                        (
                            "bill",
                            BillPayment(
                                key=self.key(day, n, f"bill{b}m{bill_month}"),
                                payer_wallet_id=self.consumers[n][1],
                                biller_wallet_id=self.billers[b],
                                reference=f"{n:010d}",
                                amount=Money(int(amounts[k]), CNY),
                                due_date=due,
                            ),
                        )
                    )
        self._submit(today, batch)

    def _purchases(self, day: date, month: int, active: np.ndarray, today: _Day) -> None:
        p = self.population
        ids = active.astype(np.uint64)
        d = day.toordinal()
        shock = p.in_shock(month)[active]
        rate = p.purchases_per_month[active] / 30.0 * np.where(shock == 1, 0.6, 1.0)
        count = np.minimum(rng.poisson(p.seed, S_BUY_COUNT, ids, rate, d), PURCHASES_PER_DAY_MAX)
        mean = p.income_monthly_minor[active] * p.spend_share[active] / p.purchases_per_month[active]
        weights = p.category_weights[active].copy()
        weights[:, 5] *= np.where(shock == 2, 6.0, 1.0)  # the ill spend at hospitals
        has_line = np.array([any(kind == "line" for _, kind in self.accounts.get(int(n), ())) for n in active])
        batch: list[tuple[str, PaymentRequest]] = []
        for j in range(PURCHASES_PER_DAY_MAX):
            buying = count > j
            if not buying.any():
                break
            category = rng.choice(p.seed, S_BUY_CATEGORY + j, ids, weights, d)
            merchant = (rng.keyed(p.seed, S_BUY_MERCHANT + j, ids, d) % np.uint64(pop.MERCHANTS_PER_CATEGORY)).astype(
                np.int64
            )
            amount = np.maximum(100, np.rint(mean * np.exp(0.7 * rng.normal(p.seed, S_BUY_AMOUNT + j, ids, d) - 0.245)))
            on_line = has_line & (rng.uniform(p.seed, S_BUY_LINE + j, ids, d) < p.line_use[active])
            for k in np.nonzero(buying)[0].tolist():
                n = int(active[k])
                shop = int(category[k]) * pop.MERCHANTS_PER_CATEGORY + int(merchant[k])
                batch.append(
                    (
                        "purchase_line" if on_line[k] else "purchase",
                        MerchantPayment(
                            key=self.key(day, n, f"buy{j}"),
                            payer_wallet_id=self.consumers[n][1],
                            merchant_wallet_id=self.merchants[shop],
                            amount=Money(int(amount[k]), CNY),
                            funding="credit_line" if on_line[k] else "wallet",
                        ),
                    )
                )
        self._submit(today, batch)

    def _applications(self, day: date, month: int, active: np.ndarray, today: _Day) -> None:
        p = self.population
        ids = active.astype(np.uint64)
        d = day.toordinal()
        shock = p.in_shock(month)[active]
        defaulted = p.defaulted(month)[active]
        hazard = p.credit_appetite[active] / 30.0 * np.where(shock > 0, 2.0, 1.0) * np.where(defaulted, 1.5, 1.0)
        applying = rng.uniform(p.seed, S_APPLY, ids, d) < hazard
        if not applying.any():
            return
        wants_line = rng.uniform(p.seed, S_PRODUCT, ids, d) < 0.55
        size_z = rng.normal(p.seed, S_AMOUNT, ids, d)
        term_draw = (rng.keyed(p.seed, S_TERM, ids, d) % np.uint64(4)).astype(np.int64)
        take = rng.uniform(p.seed, S_TAKE, ids, d) < TAKE_UP
        lending = self.platform.lending
        for k in np.nonzero(applying)[0].tolist():
            n = int(active[k])
            last = self.last_applied.get(n)
            if last is not None and (day - last).days < REAPPLY_DAYS:
                continue
            held = {kind for ref, kind in self.accounts.get(n, ()) if self.open_until.get(ref, day) >= day}
            line = bool(wants_line[k]) and "line" not in held
            if not line and "loan" in held:
                continue
            income = int(p.income_monthly_minor[n])
            # months of income asked for: median about 2.5, a long tail (some ask far beyond the caps)
            multiple = float(np.exp(0.9 + 0.55 * size_z[k] + 0.15 * p.risk[n]))
            amount = max(100_000, min(20_000_000, round(income * multiple / 10_000) * 10_000))
            term = None if line else (3, 6, 6, 12)[int(term_draw[k])]
            product = "line-cny" if line else "cash-cny"
            customer, wallet = self.consumers[n]
            key = self.key(day, n, "apply")
            self.last_applied[n] = day
            record = {
                "key": key,
                "consumer": n,
                "day": day,
                "product": product,
                "amount_minor": amount,
                "outcome": "refused",
                "application_id": None,
                "account_ref": None,
            }
            today.applications.append(record)
            try:
                applied = lending.apply(
                    member=MEMBER,
                    key=key,
                    customer_id=customer,
                    wallet_id=wallet,
                    product_code=product,
                    amount_minor=amount,
                    term_months=term,
                )
            except CreditstackError as exc:
                today.count(f"apply:error:{exc.code}")
                continue
            record["application_id"] = applied.body.get("application_id")
            if applied.status_code != 201:
                record["outcome"] = "declined"
                today.count("apply:declined")
                continue
            today.count("apply:approved")
            if not take[k]:
                record["outcome"] = "approved_not_taken"
                continue
            try:
                accepted = lending.accept(
                    member=MEMBER, key=self.key(day, n, "accept"), application_id=applied.body["application_id"]
                )
            except CreditstackError as exc:
                today.count(f"accept:error:{exc.code}")
                record["outcome"] = "approved_not_taken"
                continue
            if accepted.status_code != 201:
                today.count(f"accept:{accepted.body.get('code', accepted.status_code)}")
                record["outcome"] = "approved_not_taken"
                continue
            ref = accepted.body["account_id"]
            kind = "line" if line else "loan"
            record["outcome"] = "approved_accepted"
            record["account_ref"] = ref
            self.accounts[n].append((ref, kind))
            self.account_owner[ref] = n
            if term is not None:
                self.open_until[ref] = add_months(day, term)
            today.accounts.append(
                {"ref": ref, "consumer": n, "kind": kind, "opened_on": day, "term_months": term, "worst_dpd": 0}
            )
            today.count(f"open:{kind}", amount)
            if kind == "loan":  # a cash loan is for spending elsewhere: the borrower takes it to the bank
                self._payment(
                    today,
                    "withdrawal",
                    partial(
                        self.platform.payments.withdraw,
                        member=MEMBER,
                        key=self.key(day, n, "withdraw-loan"),
                        wallet_id=self.consumers[n][1],
                        amount=Money(amount, CNY),
                        bank_account_token=f"simbank{n}",
                    ),
                    amount,
                )

    def _repayments(self, day: date, plan: list[Any], today: _Day) -> None:
        """The day's repayments through the batch path (`repay_batch`: one call per `repay_batch_max` of
        them, each answered as `repay` would answer it); a repayment the wallet is short for is paid from the
        bank instead, in a second batch (no other request touches those accounts, so the outcomes are those
        of paying each right after its refusal). Recoveries stay single calls."""
        lending = self.platform.lending

        def repay(repayments: Sequence[tuple[str, Repayment]]) -> list[tuple[str, Repayment]]:
            """Each outcome counted as `_lending_call` counts it; returns the refused."""
            refused = []
            bound = lending.repay_batch_max
            for start in range(0, len(repayments), bound):
                chunk = repayments[start : start + bound]
                results = lending.repay_batch([r for _, r in chunk], member=MEMBER)
                for (kind, request), result in zip(chunk, results, strict=True):
                    if result.error is not None:
                        today.count(f"{kind}:error:{result.error.code}")
                    elif result.ok:
                        today.count(f"{kind}:completed", request.amount_minor)
                        continue
                    else:
                        today.count(f"{kind}:{result.body.get('code', result.status_code)}")
                    refused.append((kind, request))
            return refused

        repayments: list[tuple[str, Repayment]] = []
        for ref, _dpd, amount, source, action in plan:
            n = self.account_owner[ref]
            if action not in {"repay", "recover"}:
                today.count(f"not_paying:{action}")  # waiting to pay late, in default, or charged off
                continue
            if amount <= 0:
                continue
            if action == "recover":
                self._lending_call(
                    today,
                    "recovery",
                    partial(
                        lending.recover,
                        member=MEMBER,
                        key=self.key(day, n, f"recover:{ref}"),
                        account_id=ref,
                        amount_minor=amount,
                    ),
                    amount,
                )
                continue
            repayments.append((f"repay_{source}", Repayment(self.key(day, n, f"repay:{ref}"), ref, amount, source)))
        from_bank = []
        for kind, r in repay(repayments):
            if kind == "repay_wallet":  # short in the wallet: the consumer pays from the bank instead
                key = self.key(day, self.account_owner[r.account_id], f"repay-bank:{r.account_id}")
                from_bank.append(("repay_external", Repayment(key, r.account_id, r.amount_minor, "external")))
        repay(from_bank)

    # ------------------------------------------------------------ outcomes

    def _submit(self, today: _Day, batch: Sequence[tuple[str, PaymentRequest]]) -> None:
        """One kind of the day's payments through the payments batch path, and each outcome counted."""
        pay = self.platform.payments
        for start in range(0, len(batch), PAYMENT_BATCH_MAX):
            chunk = batch[start : start + PAYMENT_BATCH_MAX]
            results = pay.submit_batch([request for _, request in chunk], member=MEMBER)
            for (kind, request), result in zip(chunk, results, strict=True):
                error = result.body.get("error") if not result.ok else None
                if error is not None and "status" not in result.body:
                    today.count(f"{kind}:error:{error['code']}")
                    continue
                status = str(result.body.get("status", result.status_code))
                today.count(f"{kind}:{status}", request.amount.amount_minor if result.ok else 0)

    @staticmethod
    def _payment(today: _Day, kind: str, call: Callable[[], Any], amount_minor: int) -> bool:
        try:
            result = call()
        except CreditstackError as exc:
            today.count(f"{kind}:error:{exc.code}")
            return False
        status = str(result.body.get("status", result.status_code))
        today.count(f"{kind}:{status}", amount_minor if result.ok else 0)
        return bool(result.ok)

    @staticmethod
    def _lending_call(today: _Day, kind: str, call: Callable[[], Any], amount_minor: int) -> bool:
        try:
            result = call()
        except CreditstackError as exc:
            today.count(f"{kind}:error:{exc.code}")
            return False
        if result.ok:
            today.count(f"{kind}:completed", amount_minor)
            return True
        today.count(f"{kind}:{result.body.get('code', result.status_code)}")
        return False


#: The cyclic garbage collector's thresholds while a simulation runs (CPython's default is 700, 10, 10):
#: each day allocates millions of short-lived containers (`core.collector`).
GC_THRESHOLDS = (50_000, 20, 20)


def plan_positions(plan: list[Any]) -> list[tuple[str, int, str]]:
    return [(ref, int(dpd), action) for ref, dpd, _, _, action in plan]


def month_end(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def summarise(sim: Simulation) -> dict[str, Any]:
    """Counts and totals of the run — identical for the same seed and size, whether or not it was resumed
    (no timings, paths or wall-clock dates): operations by kind and outcome, applications, borrowers and
    how many went 90+ days past due, against the ground truth; the calibration figures; the reconciles."""
    p = sim.population
    counts = sim.store.counts()
    operations = {name: {"count": c, "amount_minor": a} for name, (c, a) in sorted(counts.items())}
    apps = sim.store.applications()
    outcomes = Counter(a.outcome for a in apps)
    accounts = sim.store.accounts()
    borrowers: dict[int, bool] = {}
    for a in accounts:
        borrowers[a.consumer] = borrowers.get(a.consumer, False) or a.reached_90_on is not None
    bad = sum(borrowers.values())
    latent = [n for n in borrowers if p.default_month[n] < p.months]
    quintiles = np.quantile(p.risk, [0.2, 0.4, 0.6, 0.8]) if p.size >= 5 else np.zeros(4)
    by_quintile: dict[str, dict[str, int]] = {}
    for n, was_bad in borrowers.items():
        q = str(int(np.searchsorted(quintiles, p.risk[n])) + 1)
        cell = by_quintile.setdefault(q, {"borrowers": 0, "bad": 0})
        cell["borrowers"] += 1
        cell["bad"] += int(was_bad)
    lines_limit = lines_used = 0
    after = 0
    while True:
        page = sim.platform.lending.list_accounts(after=after, limit=500)
        for account in page:
            if account["kind"] == "line" and account["status"] == "active":
                lines_limit += account["limit"]["amount_minor"]
                lines_used += account["balances"]["principal"]["amount_minor"]
        if len(page) < 500:
            break
        after = page[-1]["position"]
    completed = {
        kind: counts.get(f"{kind}:completed", (0, 0))[0]
        for kind in ("income", "purchase", "purchase_line", "bill", "repay_wallet", "repay_external")
    }
    total_payments = sum(completed.values()) or 1
    return {
        "seed": sim.config.seed,
        "consumers": p.size,
        "months": sim.config.months,
        "simulated": {"from": sim.config.start.isoformat(), "through": sim.config.end.isoformat()},
        "registered": len(sim.consumers),
        "operations": operations,
        "applications": {"total": len(apps), **dict(sorted(outcomes.items()))},
        "accounts": {
            "loans": sum(1 for a in accounts if a.kind == "loan"),
            "lines": sum(1 for a in accounts if a.kind == "line"),
        },
        "borrowers": len(borrowers),
        "borrowers_90dpd": bad,
        "borrowers_with_latent_default": len(latent),
        "bad_by_risk_quintile": dict(sorted(by_quintile.items())),
        "calibration": {
            "borrowers_90dpd_rate": _ratio(bad, len(borrowers)),
            "line_utilisation": _ratio(lines_used, lines_limit),
            "payment_mix": {k: _ratio(v, total_payments) for k, v in completed.items()},
            "approval_rate": _ratio(outcomes["approved_accepted"] + outcomes["approved_not_taken"], len(apps)),
        },
        "lending_reconcile_clean": sim.platform.lending.reconcile()["clean"],
        "colending_reconcile_clean": sim.platform.colending.reconcile()["clean"],
    }


def _ratio(numerator: int, denominator: int) -> str:
    """A ratio to four decimals, as text (exact for the same counts on every machine)."""
    if denominator == 0:
        return "0.0000"
    return str((Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001")))


def simulation_store_url(settings: Settings) -> str:
    """Where the simulation keeps its run and ground truth: beside the platform's SQLite file by default."""
    return f"sqlite:///{settings.var_dir / 'simulation.db'}"


@contextmanager
def open_simulation(
    settings: Settings, config: SimulationConfig, *, store_url: str | None = None
) -> Iterator[Simulation]:
    """The platform on the simulation clock and the simulation's store, closed at the end of the block.

    The clock starts at the day the run resumes from (the store's next day), so a new platform database
    takes the simulation's start as its first business date."""
    store = SimulationStore(store_url or simulation_store_url(settings))
    try:
        run = store.open_run(config.seed, config.consumers, config.months, config.start)
        resume = config.start if run.last_day_done is None else run.last_day_done + timedelta(days=1)
        clock = FixedClock(business_instant(resume, settings.timezone))
        platform = open_platform(settings, clock)
        try:
            yield Simulation(platform, store, config, clock)
        finally:
            platform.close()
    finally:
        store.close()


def training_set(sim: Simulation) -> list[dict[str, Any]]:
    """Rows (consumer, observation date) for scoring: the feature store's vector as of each month start,
    the label `bad_12m` — a default episode starting within the twelve months from the observation date
    (the ground truth, known for every consumer: applicants who were declined, and people who never applied,
    included) — whether the consumer applied for credit in the month after it, whether any of their accounts
    went 90+ days past due within twelve months (observed, borrowers only), and the protected attribute
    (`female`) for fairness reports — never a model input."""
    months_ahead = sim.population.months + 12
    truth = pop.build(sim.config.seed, sim.config.consumers, sim.config.start, months_ahead)
    applied: dict[int, list[date]] = defaultdict(list)
    for app in sim.store.applications():
        applied[app.consumer].append(app.day)
    reached: dict[int, list[date]] = defaultdict(list)
    for account in sim.store.accounts():
        if account.reached_90_on is not None:
            reached[account.consumer].append(account.reached_90_on)
    rows = []
    for row in sim.store.feature_rows():
        n, as_of = int(row.consumer), row.as_of
        month = truth.month_of(as_of)
        horizon = add_months(as_of, 12)
        rows.append(
            {
                "consumer": n,
                "as_of": as_of.isoformat(),
                **{k: v for k, v in row.features.items()},
                "applied_next_month": int(any(as_of <= d < add_months(as_of, 1) for d in applied.get(n, ()))),
                "observed_90dpd_12m": int(any(as_of <= d < horizon for d in reached.get(n, ()))),
                "female": int(truth.female[n]),
                "bad_12m": int(month <= truth.default_month[n] < month + 12),
            }
        )
    return rows

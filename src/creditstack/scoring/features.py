"""The feature store: behavioural features per customer, kept up to date from the outbox and recomputable
from history — the two agree (tests/integration/test_scoring_features.py).

**What is computed** is the `FEATURES` table (name, unit, characteristic group, definition). Reason codes
are one per group, so a model trained on these columns gives at most one reason about delinquency, one
about bills, and so on. Money is summed in integer minor units of the store's currency; features are
floats; a feature that cannot be computed (no bill with a due date, no credit account yet, no complete
month) is missing (`NaN`, `null` in JSON) — never a made-up zero — and the models bin missing values.

**As of a business date D**, a vector summarises the events with a business date *before* D: everything up
to the close of D − 1. So a vector for an application scored on D never contains the application itself
(nor anything else of D). Windows: "k months" is D's calendar month (its days before D) and the k − 1
months before it; "monthly means" run over the complete calendar months of the six before D's month,
counting only months after the month of the customer's first event (or that month too when the event fell
on the 1st).

**Incrementally** (`FeatureStore.process_events`, consumer `scoring_features`): each event is folded into
its customer's buckets in O(1): a bucket per calendar month (month index → counters and sums), an *open
day* bucket for the customer's latest business date (so that a vector as of that date can leave it out),
and an *archive* bucket into which months older than twelve fold (lifetime totals stay exact, the store
stays bounded). A 3/6/12-month window is a sum over at most twelve buckets. A batch of events is read after
the consumer's position, folded in memory, and the changed buckets are upserted in the transaction that
advances the position — so at-least-once delivery never counts an event twice (`apply_batch` skips what is
at or below the position). The consumer reads only the buckets a batch can touch, keeps the states it wrote
in memory for its next transaction while the stored position shows nobody else wrote since
(`FeatureStore._take_cache`), and talks to the database through the driver with statements written once
(about 20–30 µs per event on SQLite, from 80–110 through SQLAlchemy Core). A read (`vector`) folds the events
the consumer has not reached yet in memory, so a decision never sees stale features; it writes nothing.

**In batch** (`FeatureStore.recompute`): the same fold from an empty state over the outbox's events before
D, read through `core.events` (the outbox is the shared kernel; no other context's tables are read).

**Bureau attributes** (`bureau_*`) are a documented, empty group: a bureau client, pulling a report with the
consumer's consent, fills them later; until then they are missing and the models treat them as such.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import events as outbox
from creditstack.core.clock import Clock
from creditstack.core.db import Database, driver_connection
from creditstack.core.tables import PLATFORM_CORE
from creditstack.scoring import tables as t
from creditstack.scoring.errors import AsOfNotServable, EventsOutOfSequence, FeatureStoreBehind

CONSUMER = "scoring_features"
#: Events folded per consumer transaction (a simulated day of 1,000 consumers is one page).
EVENTS_PAGE = outbox.OUTBOX_PAGE_MAX
#: Most events a read folds in memory to catch up with the outbox; beyond it the read refuses.
LAG_EVENTS_MAX = 50_000
#: Months kept apart; older ones fold into the archive bucket.
HORIZON_MONTHS = 12
#: Complete months behind the monthly means (inflow, spend).
MEAN_MONTHS = 6
WINDOWS_MONTHS = (3, 6, 12)
#: Customers per page when the population is read from the store.
POPULATION_PAGE = 2_000
#: Rows per write statement (an executemany on SQLite, one statement of column arrays on PostgreSQL).
WRITE_ROWS_MAX = 5_000
#: Customer ids per `IN (…)` list.
IN_LIST_MAX = 1_000
#: Customers whose state the consumer keeps in memory between its transactions (about 1.5 KB each: ≈ 220 MB
#: when full; sized for the 100,000-consumer simulation with its merchants and billers).
STATE_CACHE_CUSTOMERS_MAX = 150_000

TOPIC_PAYMENT = "payments.payment_completed"
SPEND_CATEGORIES = ("groceries", "dining", "travel", "utilities", "gambling_cash", "other")


# ---------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True, slots=True)
class FeatureDefinition:
    name: str
    unit: str
    group: str
    label: str
    """A short phrase for reason texts ("worst days past due, last 12 months")."""
    description: str
    source: str = "platform"
    """`platform` (computed from the outbox) or `bureau` (filled by a bureau client; missing until then)."""


#: The adverse-action statement per characteristic group (one reason per group).
GROUP_STATEMENTS: dict[str, str] = {
    "tenure": "Short history of activity on the platform",
    "inflow": "Money coming into the wallet is low or irregular",
    "bills": "Bills paid late or not regularly",
    "spending": "Pattern of spending across merchant categories",
    "utilisation": "High use of the credit line against its limit",
    "repayment": "Repayments on credit accounts made late",
    "delinquency": "Recent or serious delinquency on credit accounts",
    "applications": "Number of recent applications for credit",
    "bureau": "Information from the credit bureau",
}


def _windowed(stem: str, unit: str, group: str, label: str, description: str) -> tuple[FeatureDefinition, ...]:
    return tuple(
        FeatureDefinition(f"{stem}_{k}m", unit, group, f"{label}, last {k} months", description.format(k=k))
        for k in WINDOWS_MONTHS
    )


FEATURES: tuple[FeatureDefinition, ...] = (
    FeatureDefinition(
        "tenure_days", "days", "tenure", "days since first activity",
        "Days from the business date of the customer's first event (a payment, an application) to the as-of "
        "date. Registration emits no event, so the first activity starts the clock.",
    ),
    FeatureDefinition(
        "inflow_monthly_mean_minor_6m", "minor units per month", "inflow", "average monthly money in",
        "Mean monthly money in — top-ups and transfers received — over the complete months of the six before "
        "the as-of month; missing before one complete month.",
    ),
    FeatureDefinition(
        "inflow_monthly_cv_6m", "ratio (standard deviation / mean)", "inflow", "variability of money in",
        "Coefficient of variation of monthly money in over the same months: population standard deviation "
        "over the mean; missing with fewer than two months or no money in.",
    ),
    FeatureDefinition(
        "bill_on_time_share_12m", "share (0–1)", "bills", "share of bills paid by the due date",
        "Share of bill payments carrying a due date that were paid on or before it, last 12 months; missing "
        "without such a bill.",
    ),
    FeatureDefinition(
        "bill_days_late_mean_12m", "days", "bills", "average days bills were paid late",
        "Mean days after the due date over bill payments carrying one (0 when paid on time), last 12 months.",
    ),
    FeatureDefinition(
        "bills_paid_count_12m", "count", "bills", "bills paid, last 12 months",
        "Bill payments completed in the last 12 months, with or without a due date.",
    ),
    FeatureDefinition(
        "spend_monthly_mean_minor_6m", "minor units per month", "spending", "average monthly spending",
        "Mean monthly merchant payments (from the wallet or the credit line, gross of refunds) over the "
        "complete months of the six before the as-of month.",
    ),
    *(
        FeatureDefinition(
            f"spend_share_{category}_12m", "share (0–1)", "spending", f"share of spending on {category}",
            f"Share of merchant payments in the {category} category (by merchant category code, see "
            "`spend_category`) over all merchant payments, last 12 months; missing without a merchant payment.",
        )
        for category in SPEND_CATEGORIES
    ),
    FeatureDefinition(
        "line_utilisation_ratio", "ratio", "utilisation", "credit line use against its limit",
        "Principal drawn and not repaid (draws − principal repaid − refunds) on the customer's credit lines "
        "over their limits; a charged-off line leaves both. Missing without a line.",
    ),
    FeatureDefinition(
        "repayment_on_time_share_12m", "share (0–1)", "repayment", "share of repayments made on time",
        "Share of repayments received while the account was current (not past due at the last end of day), "
        "last 12 months; missing without a repayment.",
    ),
    FeatureDefinition(
        "repayments_count_12m", "count", "repayment", "repayments, last 12 months",
        "Repayments received on the customer's loans and lines in the last 12 months.",
    ),
    *_windowed(
        "dpd_worst_days", "days", "delinquency", "worst days past due",
        "Worst days past due on any of the customer's credit accounts in the last {k} months, as reported "
        "when an account enters a delinquency bucket (so the lower edge of the worst bucket: 1, 30, 60, 90, "
        "180); missing without a credit account.",
    ),
    *_windowed(
        "delinquencies_count", "count", "delinquency", "times past due",
        "Times one of the customer's accounts went from current to past due in the last {k} months; "
        "missing without a credit account.",
    ),
    FeatureDefinition(
        "charge_offs_count", "count", "delinquency", "accounts charged off",
        "Credit accounts of the customer charged off, ever; missing without a credit account.",
    ),
    *_windowed(
        "applications_count", "count", "applications", "applications for credit",
        "Applications for credit received in the last {k} months before the as-of date — so never the "
        "application being scored.",
    ),
    FeatureDefinition(
        "bureau_inquiries_count_12m", "count", "bureau", "bureau inquiries, last 12 months",
        "Inquiries on the consumer's bureau file in the last 12 months.", "bureau",
    ),
    FeatureDefinition(
        "bureau_tradelines_open_count", "count", "bureau", "open accounts at other lenders",
        "Open tradelines on the consumer's bureau file.", "bureau",
    ),
    FeatureDefinition(
        "bureau_dpd_worst_days_24m", "days", "bureau", "worst days past due at other lenders",
        "Worst days past due on any bureau tradeline in the last 24 months.", "bureau",
    ),
    FeatureDefinition(
        "bureau_balance_total_minor", "minor units", "bureau", "balances owed to other lenders",
        "Total balance on open bureau tradelines.", "bureau",
    ),
)  # fmt: skip
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: dict[str, FeatureDefinition] = {f.name: f for f in FEATURES}


def feature_groups(names: Iterable[str] | None = None) -> dict[str, str]:
    """Column → characteristic group for the feature columns among `names` (all when `None`)."""
    wanted = set(FEATURE_NAMES if names is None else names)
    return {f.name: f.group for f in FEATURES if f.name in wanted}


def feature_reason_texts(names: Iterable[str] | None = None) -> dict[str, str]:
    """Adverse-action templates per feature column, for training: `<group statement> (<label>: {value})`."""
    wanted = set(FEATURE_NAMES if names is None else names)
    return {f.name: f"{GROUP_STATEMENTS[f.group]} ({f.label}: {{value}})" for f in FEATURES if f.name in wanted}


def spend_category(mcc: Any) -> str:
    """A four-digit merchant category code (ISO 18245) to one of `SPEND_CATEGORIES`."""
    text = str(mcc or "")
    if len(text) != 4 or not text.isdigit():
        return "other"
    code = int(text)
    if code in (4829, 6010, 6011, 6012, 6050, 6051, 6540, 7800, 7801, 7802, 7995):
        return "gambling_cash"  # wire transfers, cash, quasi-cash, lotteries and betting
    if code in (5411, 5422, 5441, 5451, 5462, 5499):
        return "groceries"
    if code in (5811, 5812, 5813, 5814):
        return "dining"
    if 3000 <= code <= 3999 or 4011 <= code <= 4789 or code in (5541, 5542, 7011, 7512):
        return "travel"  # airlines, hotels, car hire, transport, fuel
    if 4812 <= code <= 4900:
        return "utilities"  # telecommunications, cable, electricity, gas, water
    return "other"


# ---------------------------------------------------------------------------------------------- buckets
COUNTER_NAMES: tuple[str, ...] = tuple(name for name, _ in t.COUNTERS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(COUNTER_NAMES)}
_WIDTH = len(COUNTER_NAMES)
_MAX = frozenset(i for i, (_, how) in enumerate(t.COUNTERS) if how == "max")
_SUM_INDEXES = tuple(i for i in range(_WIDTH) if i not in _MAX)
_MAX_INDEXES = tuple(sorted(_MAX))
_EVENTS = INDEX["events_count"]
Bucket = list[int]


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _zeros() -> Bucket:
    return [0] * _WIDTH


def merge_into(target: Bucket, source: Bucket) -> None:
    for i in _SUM_INDEXES:
        target[i] += source[i]
    for i in _MAX_INDEXES:
        target[i] = max(target[i], source[i])


@dataclass(slots=True)
class CustomerState:
    """One customer's buckets: real months and the archive in `months`, the open day apart."""

    customer_id: str
    first_date: date | None = None
    open_date: date | None = None
    open_day: Bucket = field(default_factory=_zeros)
    months: dict[int, Bucket] = field(default_factory=dict)
    last_position: int = 0
    dirty: bool = False
    dirty_months: set[int] = field(default_factory=set)
    deleted_months: set[int] = field(default_factory=set)

    def bucket(self, day: date) -> Bucket:
        """The bucket an event of `day` goes into (rolling the open day forward when `day` is later)."""
        if self.first_date is None or day < self.first_date:
            self.first_date = day
        if self.open_date is None:
            self.open_date = day
        elif day > self.open_date:
            self._roll(day)
        if day == self.open_date:
            self.dirty_months.add(t.OPEN_DAY)
            return self.open_day
        # an event that committed after a later one of the same customer
        target = month_index(day)
        if target <= month_index(self.open_date) - HORIZON_MONTHS:
            target = t.ARCHIVE
        return self._month(target)

    def _month(self, index: int) -> Bucket:
        self.dirty_months.add(index)
        self.deleted_months.discard(index)
        bucket = self.months.get(index)
        if bucket is None:
            bucket = self.months[index] = _zeros()
        return bucket

    def _roll(self, day: date) -> None:
        assert self.open_date is not None
        merge_into(self._month(month_index(self.open_date)), self.open_day)
        self.open_day = _zeros()
        self.dirty_months.add(t.OPEN_DAY)
        self.open_date = day
        horizon = month_index(day) - HORIZON_MONTHS
        old = [m for m in self.months if t.ARCHIVE < m <= horizon]
        if old:
            archive = self._month(t.ARCHIVE)
            for m in old:
                merge_into(archive, self.months.pop(m))
                self.dirty_months.discard(m)
                self.deleted_months.add(m)


@dataclass(slots=True)
class AccountState:
    customer_id: str
    kind: str  # "line" | "loan"
    bucket: int = 0
    limit_minor: int = 0
    dirty: bool = False


#: An outbox event as the fold reads it: (position, topic, aggregate id, business date, payload).
EventRow = outbox.EventRow
Changes = tuple[tuple[int, int], ...]
_LENDING = "lending."
_I_INFLOW = INDEX["inflow_minor"]
_I_SPEND = {category: INDEX[f"spend_{category}_minor"] for category in SPEND_CATEGORIES}
_I_BILLS, _I_BILLS_DUE = INDEX["bills_count"], INDEX["bills_due_count"]
_I_BILLS_ON_TIME, _I_BILLS_LATE_DAYS = INDEX["bills_on_time_count"], INDEX["bills_days_late_sum"]
_I_APPLICATIONS, _I_OPENED = INDEX["applications_count"], INDEX["accounts_opened_count"]
_I_LIMIT, _I_PRINCIPAL = INDEX["line_limit_minor"], INDEX["line_principal_minor"]
_I_REPAYMENTS, _I_REPAYMENTS_ON_TIME = INDEX["repayments_count"], INDEX["repayments_on_time_count"]
_I_DPD, _I_DELINQUENCIES = INDEX["dpd_worst_days"], INDEX["delinquencies_count"]
_I_CHARGE_OFFS = INDEX["charge_offs_count"]
_BILL_UNDATED: Changes = ((_I_BILLS, 1),)
#: Merchant category code → its spend counter, for the codes seen (a bounded cache of `spend_category`).
_SPEND_INDEX_BY_CODE: dict[str, int] = {}
_SPEND_CODES_CACHED_MAX = 10_000


def _spend_index(mcc: Any) -> int:
    if isinstance(mcc, str):
        index = _SPEND_INDEX_BY_CODE.get(mcc)
        if index is None:
            index = _I_SPEND[spend_category(mcc)]
            if len(_SPEND_INDEX_BY_CODE) < _SPEND_CODES_CACHED_MAX:
                _SPEND_INDEX_BY_CODE[mcc] = index
        return index
    return _I_SPEND[spend_category(mcc)]


def event_row(event: outbox.StoredEvent) -> EventRow:
    return (event.position, event.topic, event.aggregate_id, event.business_date, event.payload)


class Folder:
    """Folds outbox events into customer states: the one algorithm the store and the batch path share.

    `before` skips events dated on or after it (the batch path's as-of date); `customers` limits the fold
    to those customers (a read catching up for one customer)."""

    def __init__(
        self,
        currency: str,
        states: dict[str, CustomerState] | None = None,
        accounts: dict[str, AccountState] | None = None,
        *,
        before: date | None = None,
        customers: frozenset[str] | None = None,
    ) -> None:
        self.currency = currency
        self.states = states if states is not None else {}
        self.accounts = accounts if accounts is not None else {}
        self.before = before
        self.customers = customers
        self.position = 0

    def _tracks(self, customer_id: Any) -> bool:
        return isinstance(customer_id, str) and (self.customers is None or customer_id in self.customers)

    def _money(self, payload: Mapping[str, Any], key: str) -> int:
        if payload.get("currency") != self.currency:
            return 0
        return int(payload.get(key) or 0)

    def _add(self, customer_id: Any, position: int, day: date, changes: Changes = ()) -> None:
        """Count one event of `day` for the customer, with `changes` (counter index, value) to its bucket."""
        if not isinstance(customer_id, str) or (self.customers is not None and customer_id not in self.customers):
            return
        state = self.states.get(customer_id)
        if state is None:
            state = self.states[customer_id] = CustomerState(customer_id)
        bucket = state.bucket(day)
        bucket[_EVENTS] += 1
        for i, value in changes:
            if i in _MAX:
                bucket[i] = max(bucket[i], value)
            else:
                bucket[i] += value
        state.last_position = max(state.last_position, position)
        state.dirty = True

    def fold_all(self, events: Iterable[outbox.StoredEvent]) -> None:
        self.fold_rows(map(event_row, events))

    def fold(self, event: outbox.StoredEvent) -> None:
        self.fold_rows((event_row(event),))

    def fold_rows(self, rows: Iterable[EventRow]) -> None:
        """Fold events given as `EventRow`s, in order."""
        before = self.before
        for position, topic, aggregate_id, business_date, payload in rows:
            self.position = max(self.position, position)
            if before is not None and business_date >= before:
                continue
            if topic == TOPIC_PAYMENT:
                self._fold_payment(position, business_date, payload)
            elif topic.startswith(_LENDING):
                self._fold_lending(position, business_date, aggregate_id, topic[len(_LENDING) :], payload)

    def _fold_payment(self, position: int, day: date, p: Mapping[str, Any]) -> None:
        kind = p.get("kind")
        amount = self._money(p, "amount_minor")
        if kind == "merchant":
            self._add(p.get("payer_customer_id"), position, day, ((_spend_index(p.get("merchant_category")), amount),))
        elif kind == "top_up":
            self._add(p.get("payee_customer_id"), position, day, ((_I_INFLOW, amount),))
        elif kind == "bill":
            payer = p.get("payer_customer_id")
            due_text = p.get("bill_due_date")
            if not due_text:
                self._add(payer, position, day, _BILL_UNDATED)
                return
            late_days = (day - date.fromisoformat(str(due_text))).days
            changes = (
                (_I_BILLS, 1),
                (_I_BILLS_DUE, 1),
                (_I_BILLS_ON_TIME, 1 if late_days <= 0 else 0),
                (_I_BILLS_LATE_DAYS, max(late_days, 0)),
            )
            self._add(payer, position, day, changes)
        elif kind == "p2p":
            self._add(p.get("payer_customer_id"), position, day)
            self._add(p.get("payee_customer_id"), position, day, ((_I_INFLOW, amount),))
        elif kind == "refund":
            self._add(p.get("payee_customer_id"), position, day)
        elif kind == "withdrawal":
            self._add(p.get("payer_customer_id"), position, day)

    def _fold_lending(self, position: int, day: date, ref: str, name: str, p: Mapping[str, Any]) -> None:
        account = self.accounts.get(ref)
        customer = p.get("customer_id") or (account.customer_id if account is not None else None)
        if name == "application_received":
            self._add(customer, position, day, ((_I_APPLICATIONS, 1),))
        elif name in ("line_opened", "loan_disbursed"):
            if not self._tracks(customer):
                return
            kind = "line" if name == "line_opened" else "loan"
            limit = self._money(p, "limit_minor") if kind == "line" else 0
            self.accounts[ref] = AccountState(str(customer), kind, 0, limit, dirty=True)
            self._add(customer, position, day, ((_I_OPENED, 1), (_I_LIMIT, limit)))
        elif name == "line_drawn":
            self._add(customer, position, day, ((_I_PRINCIPAL, self._money(p, "principal_minor")),))
        elif name == "repayment_received":
            on_time = 1 if account is None or account.bucket == 0 else 0
            principal = self._money(p, "principal_minor") if account is not None and account.kind == "line" else 0
            changes: Changes = ((_I_REPAYMENTS, 1), (_I_REPAYMENTS_ON_TIME, on_time), (_I_PRINCIPAL, -principal))
            self._add(customer, position, day, changes)
        elif name == "line_refunded":
            self._add(customer, position, day, ((_I_PRINCIPAL, -self._money(p, "principal_minor")),))
        elif name == "days_past_due_changed":
            if account is None:
                return
            bucket, previous = int(p.get("bucket") or 0), int(p.get("previous_bucket") or 0)
            account.bucket = bucket
            account.dirty = True
            entered = 1 if previous == 0 and bucket > 0 else 0
            self._add(customer, position, day, ((_I_DPD, int(p.get("dpd") or 0)), (_I_DELINQUENCIES, entered)))
        elif name == "charged_off":
            changes = ((_I_CHARGE_OFFS, 1),)
            if account is not None and account.kind == "line":
                changes += ((_I_PRINCIPAL, -self._money(p, "principal_minor")), (_I_LIMIT, -account.limit_minor))
                account.limit_minor = 0
                account.dirty = True
            self._add(customer, position, day, changes)
        elif name == "recovered":
            self._add(customer, position, day)


# ---------------------------------------------------------------------------------------------- vectors
@dataclass(frozen=True, slots=True)
class FeatureVector:
    """A customer's features as of a business date (events before it), and the outbox position read."""

    customer_id: str
    as_of: date
    position: int
    values: dict[str, float]
    """Every name of `FEATURES`; `NaN` where missing."""

    @property
    def known(self) -> bool:
        """Whether the customer had any event before the as-of date."""
        return not math.isnan(self.values["tenure_days"])

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "as_of": self.as_of.isoformat(),
            "position": self.position,
            "values": json_values(self.values),
        }


def json_values(values: Mapping[str, float]) -> dict[str, float | int | None]:
    """NaN → `null`; whole numbers as integers."""
    out: dict[str, float | int | None] = {}
    for name, value in values.items():
        if math.isnan(value):
            out[name] = None
        elif value.is_integer() and abs(value) < 2**53:
            out[name] = int(value)
        else:
            out[name] = value
    return out


def _share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def compute_vector(state: CustomerState | None, as_of: date, position: int, customer_id: str = "") -> FeatureVector:
    """The features of `state` as of `as_of` (its events dated before it).

    Raises `AsOfNotServable` when the state holds events dated after `as_of` that it can no longer tell
    apart (its open day is later than `as_of`)."""
    customer_id = state.customer_id if state is not None else customer_id
    state = state or CustomerState(customer_id)
    if state.open_date is not None and state.open_date > as_of:
        raise AsOfNotServable(
            f"customer {customer_id} has events of {state.open_date}, after the as-of date {as_of}", field="as_of"
        )
    view: dict[int, Bucket] = dict(state.months)
    if state.open_date is not None and state.open_date < as_of:
        month = month_index(state.open_date)
        merged = list(view.get(month) or _zeros())
        merge_into(merged, state.open_day)
        view[month] = merged
    first = state.first_date if state.first_date is not None and state.first_date < as_of else None
    this_month = month_index(as_of)

    def window(months: int) -> Bucket:
        total = _zeros()
        for index in range(this_month - months + 1, this_month + 1):
            bucket = view.get(index)
            if bucket is not None:
                merge_into(total, bucket)
        return total

    lifetime = _zeros()
    for bucket in view.values():
        merge_into(lifetime, bucket)
    windows = {k: window(k) for k in WINDOWS_MONTHS}
    last12 = windows[12]
    nan = math.nan
    values: dict[str, float] = dict.fromkeys(FEATURE_NAMES, nan)
    values["tenure_days"] = float((as_of - first).days) if first is not None else nan

    if first is not None:
        start = month_index(first) + (0 if first.day == 1 else 1)
        months = range(max(this_month - MEAN_MONTHS, start), this_month)
    else:
        months = range(0)
    inflow = [view[m][INDEX["inflow_minor"]] if m in view else 0 for m in months]
    spend_names = [f"spend_{c}_minor" for c in SPEND_CATEGORIES]
    spend = [sum(view[m][INDEX[n]] for n in spend_names) if m in view else 0 for m in months]
    if inflow:
        count, total, squares = len(inflow), sum(inflow), sum(x * x for x in inflow)
        values["inflow_monthly_mean_minor_6m"] = total / count
        values["spend_monthly_mean_minor_6m"] = sum(spend) / count
        if count >= 2 and total > 0:
            values["inflow_monthly_cv_6m"] = math.sqrt(count * squares - total * total) / total

    due = last12[INDEX["bills_due_count"]]
    values["bill_on_time_share_12m"] = _share(last12[INDEX["bills_on_time_count"]], due)
    values["bill_days_late_mean_12m"] = _share(last12[INDEX["bills_days_late_sum"]], due)
    values["bills_paid_count_12m"] = float(last12[INDEX["bills_count"]])

    spent = sum(last12[INDEX[n]] for n in spend_names)
    for category, name in zip(SPEND_CATEGORIES, spend_names, strict=True):
        values[f"spend_share_{category}_12m"] = _share(last12[INDEX[name]], spent)

    limit = lifetime[INDEX["line_limit_minor"]]
    if limit > 0:
        values["line_utilisation_ratio"] = max(lifetime[INDEX["line_principal_minor"]], 0) / limit

    repayments = last12[INDEX["repayments_count"]]
    values["repayment_on_time_share_12m"] = _share(last12[INDEX["repayments_on_time_count"]], repayments)
    values["repayments_count_12m"] = float(repayments)

    has_credit = lifetime[INDEX["accounts_opened_count"]] > 0
    for k, bucket in windows.items():
        values[f"applications_count_{k}m"] = float(bucket[INDEX["applications_count"]])
        if has_credit:
            values[f"dpd_worst_days_{k}m"] = float(bucket[INDEX["dpd_worst_days"]])
            values[f"delinquencies_count_{k}m"] = float(bucket[INDEX["delinquencies_count"]])
    if has_credit:
        values["charge_offs_count"] = float(lifetime[INDEX["charge_offs_count"]])
    return FeatureVector(customer_id, as_of, position, values)


# ---------------------------------------------------------------------------------------------- the store
class FeatureStore:
    """The feature store on the platform database: the consumer, reads, and the batch path."""

    def __init__(
        self, db: Database, clock: Clock, *, currency: str = "CNY", lag_events_max: int = LAG_EVENTS_MAX
    ) -> None:
        self.db = db
        self.clock = clock
        self.currency = currency
        self.lag_events_max = lag_events_max
        self._cache: dict[str, CustomerState] = {}
        self._cache_position = -1

    # ------------------------------------------------------------ the consumer
    def _take_cache(self, position: int) -> dict[str, CustomerState]:
        """The states this store last wrote, if they are still what is stored: the consumer's stored
        `position` (read under the consumer's lock) is the one it advanced to when it wrote them.

        Why that suffices: only the consumer writes the feature tables, always in the transaction that
        advances its position, and the position only grows; and the states at a position are a function of
        the outbox's events up to it (positions are gapless and commit-ordered, the fold deterministic), so
        whoever stored that position stored these states. A rolled-back transaction (or batch) leaves a
        stored position that no longer matches. A fold changes cached states in place, so the cache is
        taken out for the transaction and put back only when its work is done: a failed transaction leaves
        it empty."""
        cache, cached_position = self._cache, self._cache_position
        self._cache, self._cache_position = {}, -1
        return cache if cached_position == position else {}

    def _keep_cache(self, cache: dict[str, CustomerState], folder: Folder | None, position: int) -> None:
        """Put the cache back for the next transaction, with the states of `folder` (as just written) in
        it, each cut down to what a later fold may take from the cache: the open day and the bucket of
        the open date's month."""
        if folder is not None:
            for customer_id, state in folder.states.items():
                if state.open_date is None:
                    continue
                month = month_index(state.open_date)
                if len(state.months) > 1 or (state.months and month not in state.months):
                    bucket = state.months.get(month)
                    state.months = {month: bucket} if bucket is not None else {}
                state.dirty = False
                state.dirty_months.clear()
                state.deleted_months.clear()
                cache.pop(customer_id, None)  # re-inserted last: the dict's order is the eviction order
                cache[customer_id] = state
            excess = len(cache) - STATE_CACHE_CUSTOMERS_MAX
            if excess > 0:
                for customer_id in list(itertools.islice(cache, excess)):
                    del cache[customer_id]
        self._cache, self._cache_position = cache, position

    def _lock(self, conn: Connection) -> int:
        if self.db.is_postgres:  # until the consumer's first position is stored, FOR UPDATE locks no row
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"outbox:{CONSUMER}"})
        return outbox.consumer_position(conn, PLATFORM_CORE, CONSUMER, lock=True)

    def process_events(self, *, limit: int = EVENTS_PAGE) -> int:
        """Fold the next events after the consumer's position; returns how many were read."""

        def work(conn: Connection) -> int:
            position = self._lock(conn)
            cache = self._take_cache(position)
            rows = outbox.read_rows_after(conn, PLATFORM_CORE, position, limit)
            folder = None
            if rows:
                folder = self._apply(conn, rows, cache)
                position = rows[-1][0]
                outbox.advance_consumer(conn, PLATFORM_CORE, CONSUMER, position, self.clock.now())
            self._keep_cache(cache, folder, position)
            return len(rows)

        return int(self.db.run(work))

    def process_all(self) -> int:
        total = 0
        while read := self.process_events():
            total += read
        return total

    def apply_batch(self, events: Sequence[outbox.StoredEvent]) -> int:
        """Fold a delivered batch: events at or below the consumer's position were folded before and are
        skipped, so a redelivered batch changes nothing; the rest must continue from the position (outbox
        positions are gapless), else `scoring.events_out_of_sequence`. Returns how many were new."""

        def work(conn: Connection) -> int:
            position = self._lock(conn)
            cache = self._take_cache(position)
            fresh = sorted((e for e in events if e.position > position), key=lambda e: e.position)
            if fresh and fresh[0].position != position + 1:  # outbox positions are gapless
                raise EventsOutOfSequence(
                    f"the batch starts at outbox position {fresh[0].position}; the consumer is at {position}"
                )
            folder = None
            if fresh:
                folder = self._apply(conn, [event_row(e) for e in fresh], cache)
                position = fresh[-1].position
                outbox.advance_consumer(conn, PLATFORM_CORE, CONSUMER, position, self.clock.now())
            self._keep_cache(cache, folder, position)
            return len(fresh)

        return int(self.db.run(work))

    def position(self) -> int:
        return int(self.db.run(lambda conn: outbox.consumer_position(conn, PLATFORM_CORE, CONSUMER), readonly=True))

    def _apply(self, conn: Connection, rows: Sequence[EventRow], cache: Mapping[str, CustomerState]) -> Folder:
        """Fold `rows` into the stored states of the customers they name and write back what changed.

        Only the buckets the fold can touch are read (see `_load_states`); the fold never looks at the
        others, and only changed buckets are written, so the result is the same as with every bucket read.
        A customer's state comes from `cache` (see `_take_cache`) when every event of the batch is dated in
        the month of its open date: such events touch only the open day and that month's bucket (a roll
        to a later day of the same month archives nothing, since no stored month is twelve months older
        than the open date), and those two are what the cache keeps."""
        customers: set[str] = set()
        refs: set[str] = set()
        days: set[date] = set()
        for _, topic, aggregate_id, business_date, payload in rows:
            days.add(business_date)
            for key in ("payer_customer_id", "payee_customer_id", "customer_id"):
                value = payload.get(key)
                if isinstance(value, str):
                    customers.add(value)
            if topic.startswith(_LENDING):
                refs.add(aggregate_id)
        accounts = _load_accounts(conn, "account_ref", refs)
        customers |= {a.customer_id for a in accounts.values()}
        states: dict[str, CustomerState] = {}
        months = {month_index(day) for day in days}
        if len(months) == 1 and cache:
            (month,) = months
            for customer_id in customers:
                cached = cache.get(customer_id)
                if cached is not None and cached.open_date is not None and month_index(cached.open_date) == month:
                    states[customer_id] = cached
        states.update(_load_states(conn, customers.difference(states), touched_by=days))
        folder = Folder(self.currency, states, accounts)
        folder.fold_rows(rows)
        self._save(conn, folder)
        return folder

    def _save(self, conn: Connection, folder: Folder) -> None:
        now = self.clock.now()
        customer_rows: list[tuple[Any, ...]] = []
        month_rows: list[tuple[Any, ...]] = []
        deleted: list[tuple[str, int]] = []
        for customer_id, state in folder.states.items():
            if not state.dirty:
                continue
            assert state.first_date is not None and state.open_date is not None
            customer_rows.append((customer_id, state.first_date, state.open_date, state.last_position, now))
            for index in state.dirty_months:
                bucket = state.open_day if index == t.OPEN_DAY else state.months[index]
                month_rows.append((customer_id, index, *bucket))
            if state.deleted_months:
                deleted += [(customer_id, m) for m in state.deleted_months]
        account_rows = [
            (ref, a.customer_id, a.kind, a.bucket, a.limit_minor) for ref, a in folder.accounts.items() if a.dirty
        ]
        # in no particular order: the consumer's lock keeps writers of these rows apart
        _write(conn, _CUSTOMERS, customer_rows)
        _write(conn, _MONTHS, month_rows)
        _write(conn, _MONTHS_DELETE, deleted)
        _write(conn, _ACCOUNTS, account_rows)

    # ------------------------------------------------------------ reads
    def state(self, customer_id: str) -> CustomerState | None:
        """The stored state of one customer (what the consumer has folded so far)."""

        def work(conn: Connection) -> CustomerState | None:
            return _load_states(conn, {customer_id}).get(customer_id)

        return self.db.run(work, readonly=True)

    def vector(self, customer_id: str, as_of: date) -> FeatureVector:
        """A customer's vector as of `as_of`: the stored state plus, folded in memory, the outbox events the
        consumer has not reached yet. Writes nothing (a decision may call it inside its own transaction)."""

        def work(conn: Connection) -> tuple[CustomerState | None, int]:
            position = outbox.consumer_position(conn, PLATFORM_CORE, CONSUMER)
            states = _load_states(conn, {customer_id})
            accounts = _load_accounts(conn, "customer_id", {customer_id})
            folder = Folder(self.currency, states, accounts, customers=frozenset({customer_id}))
            read = 0
            while page := outbox.read_after(conn, PLATFORM_CORE, position, limit=outbox.OUTBOX_PAGE_MAX):
                read += len(page)
                if read > self.lag_events_max:
                    raise FeatureStoreBehind(
                        f"the feature store is more than {self.lag_events_max} events behind the outbox; "
                        "run `creditstack scoring features update`"
                    )
                folder.fold_all(page)
                position = page[-1].position
            return folder.states.get(customer_id), position

        state, position = self.db.run(work, readonly=True)
        return compute_vector(state, as_of, position, customer_id)

    def latest_open_date(self) -> date | None:
        """The latest business date of any event in the store (a population vector needs as-of after it)."""
        value = self.db.run(
            lambda conn: conn.execute(sa.select(sa.func.max(t.customers.c.open_date))).scalar_one_or_none(),
            readonly=True,
        )
        return value if isinstance(value, date) else None

    def customers_count(self) -> int:
        return int(
            self.db.run(
                lambda conn: conn.execute(sa.select(sa.func.count()).select_from(t.customers)).scalar_one(),
                readonly=True,
            )
        )

    def population(self, as_of: date, *, page: int = POPULATION_PAGE) -> Iterator[list[FeatureVector]]:
        """Every stored customer's vector as of `as_of`, a page at a time in customer-id order (the stored
        state: run `process_all` first to include the latest events)."""
        after = ""
        while True:

            def work(conn: Connection, after: str = after) -> tuple[list[CustomerState], int]:
                position = outbox.consumer_position(conn, PLATFORM_CORE, CONSUMER)
                c = t.customers.c
                ids = list(
                    conn.execute(
                        sa.select(c.customer_id).where(c.customer_id > after).order_by(c.customer_id).limit(page)
                    ).scalars()
                )
                states = _load_states(conn, set(ids))
                return [states[i] for i in ids], position

            states, position = self.db.run(work, readonly=True)
            if not states:
                return
            yield [compute_vector(s, as_of, position) for s in states]
            after = states[-1].customer_id

    # ------------------------------------------------------------ the batch path
    def recompute(
        self,
        as_of: date,
        *,
        customer_ids: Iterable[str] | None = None,
        through_position: int | None = None,
    ) -> dict[str, FeatureVector]:
        """Vectors as of `as_of` recomputed from history: the outbox's events dated before it (and at or
        below `through_position` when given), folded from empty states. Every customer with such an event,
        or the ones named (a named customer without events gets the empty vector)."""
        wanted = frozenset(customer_ids) if customer_ids is not None else None
        folder = Folder(self.currency, before=as_of, customers=wanted)
        position = 0

        def read(after: int) -> list[outbox.StoredEvent]:
            return self.db.run(
                lambda conn: outbox.read_after(conn, PLATFORM_CORE, after, limit=outbox.OUTBOX_PAGE_MAX),
                readonly=True,
            )

        while True:
            page = read(position)
            if through_position is not None:
                page = [e for e in page if e.position <= through_position]
            if not page:
                break
            folder.fold_all(page)
            position = page[-1].position
        names = sorted(wanted) if wanted is not None else sorted(folder.states)
        return {name: compute_vector(folder.states.get(name), as_of, position, name) for name in names}


# ---------------------------------------------------------------------------------------------- rows
# The consumer's statements go through the DB-API driver (`core.db.driver_connection`), written once per
# dialect: SQLAlchemy's per-statement compilation and per-row parameter and result processing cost more
# than the database's work here (measured: 80 of 110 µs per event on SQLite). Values are converted as
# SQLAlchemy would convert them (the columns' bind processors), so the rows read alike either way.
def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _where_in(postgres: bool, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """`column IN (…)` and its parameters: one array parameter on PostgreSQL, one per value on SQLite."""
    if postgres:
        cast = "bigint" if all(type(v) is int for v in values) else "text"
        return f"{column} = ANY(%s::{cast}[])", [_pg_array(values)]
    return f"{column} IN ({', '.join('?' * len(values))})", list(values)


def _pg_array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (`{1,2}`, `{"a","b"}`) for the statement to cast: a tenth of the time
    psycopg takes to adapt a list element by element (measured: 1 µs per value)."""
    values = list(values)
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join(_pg_element(v) for v in values) + "}"


def _pg_element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value.isoformat() if isinstance(value, date) else str(value)  # dates and datetimes: ISO 8601
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _load_accounts(conn: Connection, column: str, keys: set[str]) -> dict[str, AccountState]:
    """The stored accounts whose `column` (`account_ref` or `customer_id`) is among `keys`."""
    found: dict[str, AccountState] = {}
    if not keys:
        return found
    postgres = _is_postgres(conn)
    cur = driver_connection(conn).cursor()
    try:
        for chunk in _chunks(sorted(keys), IN_LIST_MAX):
            where, parameters = _where_in(postgres, column, chunk)
            cur.execute(
                f"SELECT account_ref, customer_id, kind, bucket, limit_minor FROM {t.accounts.name} WHERE {where}",
                parameters,
            )
            for ref, customer_id, kind, bucket, limit_minor in cur.fetchall():
                found[ref] = AccountState(customer_id, kind, int(bucket), int(limit_minor))
    finally:
        cur.close()
    return found


_MONTH_COLUMNS = ", ".join(("customer_id", "month_index", *COUNTER_NAMES))


def _load_states(
    conn: Connection, customer_ids: set[str], *, touched_by: set[date] | None = None
) -> dict[str, CustomerState]:
    """The stored states of `customer_ids` (those that have one).

    With `touched_by` (the business dates of a batch of events about to be folded) only the buckets that
    folding those events can read or change are loaded: the open day, the archive, the month of the
    stored open date (a roll merges the open day into it), the months of the batch's dates (late events,
    and rolls to a date of the batch) and every month at or below the horizon of the batch's latest date
    (a roll folds those into the archive). `CustomerState.bucket` touches no other bucket, so the fold
    and the buckets written are the same as with every bucket loaded; such a state is for folding and
    saving only, never for `compute_vector`."""
    states: dict[str, CustomerState] = {}
    postgres = _is_postgres(conn)
    cur = driver_connection(conn).cursor()
    try:
        for chunk in _chunks(sorted(customer_ids), IN_LIST_MAX):
            where, parameters = _where_in(postgres, "customer_id", chunk)
            cur.execute(
                f"SELECT customer_id, first_date, open_date, last_position FROM {t.customers.name} WHERE {where}",
                parameters,
            )
            found: list[str] = []
            for customer_id, first_date, open_date, last_position in cur.fetchall():
                states[customer_id] = CustomerState(
                    customer_id, _as_date(first_date), _as_date(open_date), last_position=int(last_position)
                )
                found.append(customer_id)
            if not found:
                continue
            where, parameters = _where_in(postgres, "customer_id", found)
            if touched_by is not None:
                wanted = {month_index(day) for day in touched_by}
                wanted |= {month_index(states[c].open_date or date.min) for c in found}
                months_where, months_parameters = _where_in(postgres, "month_index", sorted(wanted))
                where += f" AND (month_index <= {'%s' if postgres else '?'} OR {months_where})"
                parameters += [month_index(max(touched_by)) - HORIZON_MONTHS, *months_parameters]
            cur.execute(f"SELECT {_MONTH_COLUMNS} FROM {t.months.name} WHERE {where}", parameters)
            for customer_id, index, *counters in cur.fetchall():
                state = states[customer_id]
                if index == t.OPEN_DAY:
                    state.open_day = counters
                else:
                    state.months[int(index)] = counters
    finally:
        cur.close()
    return states


@dataclass(frozen=True, eq=False)  # hashed by identity: a key of the compiled statements
class _Write:
    """One write of many rows in both dialects: an upsert (`keys` conflict, the other columns replaced)
    or, with `delete`, a delete by `keys`."""

    table: sa.Table
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    delete: bool = False

    def sql(self, dialect: sa.Dialect) -> str:
        columns = ", ".join(self.columns)
        if dialect.name == "postgresql":  # one statement per chunk: a column array per column, unnested
            arrays = ", ".join(f"%s::{self.table.c[c].type.compile(dialect=dialect)}[]" for c in self.columns)
            rows = f"SELECT * FROM unnest({arrays})"
            if self.delete:
                return f"DELETE FROM {self.table.name} WHERE ({columns}) IN ({rows})"
        else:  # one prepared statement, executemany
            rows = f"VALUES ({', '.join('?' * len(self.columns))})"
            if self.delete:
                conditions = " AND ".join(f"{c} = ?" for c in self.columns)
                return f"DELETE FROM {self.table.name} WHERE {conditions}"
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns if c not in self.keys)
        return (
            f"INSERT INTO {self.table.name} ({columns}) {rows} "
            f"ON CONFLICT ({', '.join(self.keys)}) DO UPDATE SET {updates}"
        )


_CUSTOMERS = _Write(
    t.customers, ("customer_id", "first_date", "open_date", "last_position", "updated_at"), ("customer_id",)
)
_MONTHS = _Write(t.months, ("customer_id", "month_index", *COUNTER_NAMES), ("customer_id", "month_index"))
_MONTHS_DELETE = _Write(t.months, ("customer_id", "month_index"), ("customer_id", "month_index"), delete=True)
_ACCOUNTS = _Write(t.accounts, ("account_ref", "customer_id", "kind", "bucket", "limit_minor"), ("account_ref",))
_SQL: dict[tuple[_Write, bool], str] = {}


def _write(conn: Connection, write: _Write, rows: Sequence[tuple[Any, ...]]) -> None:
    """`write` for every row (tuples in `write.columns` order), `WRITE_ROWS_MAX` rows per statement."""
    if not rows:
        return
    postgres = _is_postgres(conn)
    sql = _SQL.get((write, postgres))
    if sql is None:
        sql = _SQL[(write, postgres)] = write.sql(conn.dialect)
    if not postgres:
        rows = _bind_values(conn, write, rows)
    cur = driver_connection(conn).cursor()
    try:
        for chunk in _chunks(rows, WRITE_ROWS_MAX):
            if postgres:
                cur.execute(sql, [_pg_array(column) for column in zip(*chunk, strict=True)])
            else:
                cur.executemany(sql, chunk)
    finally:
        cur.close()


def _bind_values(conn: Connection, write: _Write, rows: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
    """The rows with each value converted by its column type's bind processor (dates to text on SQLite),
    once per distinct value of a column."""
    dialect = conn.dialect
    processors = [
        (i, processor)
        for i, name in enumerate(write.columns)
        if (processor := write.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    if not processors:
        return rows
    columns = list(zip(*rows, strict=True))
    for i, processor in processors:
        converted = {value: processor(value) for value in set(columns[i])}
        columns[i] = tuple(map(converted.__getitem__, columns[i]))
    return list(zip(*columns, strict=True))

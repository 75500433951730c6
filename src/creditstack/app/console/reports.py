"""Portfolio reports for the console, from lending's set-based aggregates, in `analytics`' own types.

Lending answers each report with one GROUP BY over the book (a few hundred rows however many accounts);
these pure functions turn those counts into `analytics`' rows — `BucketRow`, `VintagePoint`, `RollRates` —
with its labels and its exact ratios, so the numbers mean what `analytics.portfolio` says they mean (a test
checks them against `analytics`' per-account functions on the same book).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from creditstack.analytics.portfolio import (
    CLOSED_STATUSES,
    DPD_BOUNDARIES_DEFAULT,
    ROLL_CHARGED_OFF,
    ROLL_CLOSED,
    ROLL_MISSING,
    BucketRow,
    RollRates,
    VintagePoint,
    bucket_labels,
    month_index,
    month_label,
    ratio,
)

#: Most vintages drawn on one chart (the newest).
VINTAGES_MAX = 24
#: Most month ends in the delinquency history (the newest).
MONTHS_MAX = 36
CHARGED_OFF = "charged_off"


def currencies(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({str(r["currency"]) for r in rows})


def pick_currency(available: Sequence[str], wanted: str | None) -> str | None:
    """The currency a report shows: the one asked for if the book has it, else the first."""
    if wanted in available:
        return wanted
    return available[0] if available else None


@dataclass(frozen=True, slots=True)
class DelinquencyMonth:
    """One month end: the open book by DPD bucket, and what was charged off by then."""

    month_end: date
    buckets: tuple[BucketRow, ...]
    charged_off_accounts: int
    charged_off_balance_minor: int

    @property
    def accounts(self) -> int:
        return sum(b.accounts for b in self.buckets)

    @property
    def balance_minor(self) -> int:
        return sum(b.balance_minor for b in self.buckets)


def delinquency_history(
    band_rows: Iterable[Mapping[str, Any]],
    currency: str,
    boundaries: Sequence[int] = DPD_BOUNDARIES_DEFAULT,
) -> list[DelinquencyMonth]:
    """Per month end, the active accounts by DPD bucket (`analytics.bucket_distribution`'s rows: every bucket,
    in order, with shares of the month's total); closed accounts are left out, charged-off ones counted apart."""
    labels = bucket_labels(boundaries)
    accounts: dict[date, list[int]] = defaultdict(lambda: [0] * len(labels))
    balances: dict[date, list[int]] = defaultdict(lambda: [0] * len(labels))
    charged: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for row in band_rows:
        if row["currency"] != currency:
            continue
        month_end = row["month_end"]
        if row["status"] == CHARGED_OFF:
            charged[month_end][0] += row["accounts"]
            charged[month_end][1] += row["balance_minor"]
        elif row["status"] not in CLOSED_STATUSES:
            accounts[month_end][row["band"]] += row["accounts"]
            balances[month_end][row["band"]] += row["balance_minor"]
    history = []
    for month_end in sorted(set(accounts) | set(charged))[-MONTHS_MAX:]:
        counts, amounts = accounts[month_end], balances[month_end]
        total_accounts, total_balance = sum(counts), sum(amounts)
        buckets = tuple(
            BucketRow(label, n, amount, ratio(n, total_accounts), ratio(amount, total_balance))
            for label, n, amount in zip(labels, counts, amounts, strict=True)
        )
        history.append(DelinquencyMonth(month_end, buckets, charged[month_end][0], charged[month_end][1]))
    return history


def vintage_points(rows: Iterable[Mapping[str, Any]], vintages_max: int = VINTAGES_MAX) -> list[VintagePoint]:
    """`analytics.vintage_curves` from lending's `vintage_counts`: per vintage, the cumulative bad rate at each
    month on book from its earliest to its latest observed, bad being absorbing (an account is bad from the
    first month end at which it met the metric)."""
    by_vintage: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_vintage[month_index(row["origination_month"])].append(row)
    points: list[VintagePoint] = []
    for origin in sorted(by_vintage)[-vintages_max:]:
        groups = by_vintage[origin]
        accounts = sum(int(g["accounts"]) for g in groups)
        principal = sum(int(g["original_principal_minor"]) for g in groups)
        low = min(month_index(g["first_month_end"]) for g in groups) - origin
        high = max(month_index(g["last_month_end"]) for g in groups) - origin
        bad_at: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
        for g in groups:
            if g["first_bad_month_end"] is not None:
                mob = month_index(g["first_bad_month_end"]) - origin
                n, amount = bad_at[mob]
                bad_at[mob] = (n + int(g["accounts"]), amount + int(g["original_principal_minor"]))
        bad = bad_principal = 0
        for mob in range(low, high + 1):
            n, amount = bad_at.get(mob, (0, 0))
            bad, bad_principal = bad + n, bad_principal + amount
            points.append(
                VintagePoint(
                    vintage=month_label(origin),
                    months_on_book=mob,
                    accounts=accounts,
                    bad_accounts=bad,
                    bad_rate=ratio(bad, accounts),
                    original_principal_minor=principal,
                    bad_principal_minor=bad_principal,
                    bad_principal_rate=ratio(bad_principal, principal),
                )
            )
    return points


def roll_rates_from(
    transitions: Iterable[Mapping[str, Any]],
    from_month_end: date,
    to_month_end: date,
    boundaries: Sequence[int] = DPD_BOUNDARIES_DEFAULT,
) -> RollRates:
    """`analytics.roll_rates` from lending's `snapshot_transitions`: states are the DPD buckets, then charged
    off, closed; an account without a to-month snapshot goes to `missing`."""
    labels = bucket_labels(boundaries)
    from_states = (*labels, ROLL_CHARGED_OFF, ROLL_CLOSED)
    to_states = (*from_states, ROLL_MISSING)

    def state(status: str, band: int) -> str:
        if status == CHARGED_OFF:
            return ROLL_CHARGED_OFF
        if status in CLOSED_STATUSES:
            return ROLL_CLOSED
        return labels[band]

    counts = {i: dict.fromkeys(to_states, 0) for i in from_states}
    balances = {i: dict.fromkeys(to_states, 0) for i in from_states}
    to_balances = {i: dict.fromkeys(to_states, 0) for i in from_states}
    for row in transitions:
        i = state(row["from_status"], row["from_band"])
        j = ROLL_MISSING if row["to_status"] is None else state(row["to_status"], row["to_band"])
        counts[i][j] += row["accounts"]
        balances[i][j] += row["from_balance_minor"]
        to_balances[i][j] += row["to_balance_minor"]
    return RollRates(
        month_label(month_index(from_month_end)),
        month_label(month_index(to_month_end)),
        from_states,
        to_states,
        counts,
        balances,
        to_balances,
    )


def default_roll_months(month_ends: Sequence[date]) -> tuple[date, date] | None:
    """The latest two month ends with snapshots, or None before there are two."""
    if len(month_ends) < 2:
        return None
    return month_ends[-2], month_ends[-1]

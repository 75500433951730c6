"""The feature fold and the vector arithmetic, without a database: a worked example computed by hand, the
as-of rule (events before D), the twelve-month archive, late events, and the documented table."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from creditstack.core.clock import UTC
from creditstack.core.events import StoredEvent
from creditstack.scoring.errors import AsOfNotServable
from creditstack.scoring.features import (
    FEATURE_NAMES,
    FEATURES,
    GROUP_STATEMENTS,
    SPEND_CATEGORIES,
    Folder,
    compute_vector,
    feature_groups,
    feature_reason_texts,
    json_values,
    month_index,
    spend_category,
)
from creditstack.scoring.tables import ARCHIVE, OPEN_DAY

C = "cus_c"


class Events:
    """Builds `StoredEvent`s with consecutive positions, shaped as payments and lending write them."""

    def __init__(self) -> None:
        self.made: list[StoredEvent] = []

    def add(self, topic: str, aggregate: str, day: str, **payload: Any) -> None:
        when = date.fromisoformat(day)
        created = datetime(when.year, when.month, when.day, tzinfo=UTC)
        self.made.append(StoredEvent(len(self.made) + 1, topic, aggregate, when, created, payload))

    def payment(self, day: str, kind: str, amount: int, **extra: Any) -> None:
        payer = extra.pop("payer", C if kind in ("merchant", "bill", "withdrawal", "p2p_out") else "cus_other")
        payee = extra.pop("payee", C if kind in ("top_up", "p2p", "refund") else "merchant")
        self.add(
            "payments.payment_completed",
            f"pay{len(self.made)}",
            day,
            kind=kind.removesuffix("_out"),
            amount_minor=amount,
            currency="CNY",
            payer_customer_id=payer,
            payee_customer_id=payee,
            **extra,
        )

    def lending(self, topic: str, ref: str, day: str, **payload: Any) -> None:
        self.add(f"lending.{topic}", ref, day, currency="CNY", **payload)


def worked_example() -> Events:
    """One customer from February to June 2026; the expected features are worked out in the test."""
    e = Events()
    e.payment("2026-02-10", "top_up", 100_000)
    e.lending("line_opened", "line3", "2026-02-11", customer_id=C, limit_minor=50_000)
    e.lending("line_drawn", "line3", "2026-02-12", customer_id=C, amount_minor=20_000, principal_minor=20_000)
    e.lending("application_received", "app1", "2026-03-01", customer_id=C, amount_minor=100_000)
    e.lending("line_opened", "line1", "2026-03-02", customer_id=C, limit_minor=100_000)
    e.lending("loan_disbursed", "loan2", "2026-03-02", customer_id=C, principal_minor=300_000)
    e.lending("line_drawn", "line1", "2026-03-03", customer_id=C, amount_minor=40_000, principal_minor=40_000)
    e.payment("2026-03-05", "top_up", 200_000)
    e.payment("2026-03-08", "bill", 9_000, bill_due_date="2026-03-10")
    e.payment("2026-04-01", "merchant", 30_000, merchant_category="5411")
    e.lending("repayment_received", "line1", "2026-04-02", customer_id=C, amount_minor=12_000, principal_minor=10_000)
    e.lending("days_past_due_changed", "loan2", "2026-04-03", account_id="loan2", dpd=1, bucket=1, previous_bucket=0)
    e.lending("line_refunded", "line1", "2026-04-03", amount_minor=5_000, principal_minor=5_000)
    e.payment("2026-04-05", "top_up", 400_000)
    e.lending("repayment_received", "loan2", "2026-04-10", customer_id=C, amount_minor=60_000, principal_minor=50_000)
    e.lending("days_past_due_changed", "loan2", "2026-04-11", account_id="loan2", dpd=0, bucket=0, previous_bucket=1)
    e.payment("2026-04-15", "bill", 9_000, bill_due_date="2026-04-10")
    e.payment("2026-05-01", "merchant", 10_000, merchant_category="5812")
    e.lending("days_past_due_changed", "loan2", "2026-05-03", account_id="loan2", dpd=1, bucket=1, previous_bucket=0)
    e.payment("2026-05-05", "top_up", 300_000)
    e.payment("2026-05-10", "bill", 2_000)  # no due date
    e.lending("charged_off", "line3", "2026-05-15", customer_id=C, account_id="line3", principal_minor=20_000)
    e.payment("2026-05-20", "p2p", 100_000)  # received from another consumer
    e.lending("days_past_due_changed", "loan2", "2026-06-02", account_id="loan2", dpd=30, bucket=2, previous_bucket=1)
    e.payment("2026-06-14", "merchant", 10_000, merchant_category="7995")
    e.lending("application_received", "app2", "2026-06-15", customer_id=C, amount_minor=50_000)
    return e


def fold(events: list[StoredEvent], **options: Any) -> Folder:
    folder = Folder("CNY", **options)
    folder.fold_all(events)
    return folder


def test_worked_example_as_of_the_day_of_a_new_application() -> None:
    folder = fold(worked_example().made)
    vector = compute_vector(folder.states[C], date(2026, 6, 15), folder.position)
    v = vector.values
    assert v["tenure_days"] == (date(2026, 6, 15) - date(2026, 2, 10)).days == 125
    # complete months after February's (the first event was on the 10th): March, April, May
    assert v["inflow_monthly_mean_minor_6m"] == pytest.approx((200_000 + 400_000 + 400_000) / 3)
    # CV = population standard deviation / mean = sqrt(3·(2²+4²+4²)·10¹⁰ − 10¹²) / 10⁶
    assert v["inflow_monthly_cv_6m"] == pytest.approx(math.sqrt(8e10) / 1e6) == pytest.approx(0.2828427)
    assert v["spend_monthly_mean_minor_6m"] == pytest.approx((0 + 30_000 + 10_000) / 3)
    # bills: on time (−2 days), five days late, one without a due date
    assert (v["bill_on_time_share_12m"], v["bill_days_late_mean_12m"], v["bills_paid_count_12m"]) == (0.5, 2.5, 3)
    assert v["spend_share_groceries_12m"] == 0.6 and v["spend_share_dining_12m"] == 0.2
    assert v["spend_share_gambling_cash_12m"] == 0.2 and v["spend_share_travel_12m"] == 0.0
    # lines: limits 100,000 + 50,000 − 50,000 (charged off); principal 40,000 + 20,000 − 10,000 − 5,000 − 20,000
    assert v["line_utilisation_ratio"] == 0.25
    # the line repayment came while current, the loan's while it was past due
    assert (v["repayment_on_time_share_12m"], v["repayments_count_12m"]) == (0.5, 2)
    assert (v["dpd_worst_days_3m"], v["dpd_worst_days_6m"], v["dpd_worst_days_12m"]) == (30, 30, 30)
    assert (v["delinquencies_count_3m"], v["delinquencies_count_12m"]) == (2, 2)
    assert v["charge_offs_count"] == 1
    # 1 March is outside the three months (April–June); the application of 15 June is the one being scored
    assert (v["applications_count_3m"], v["applications_count_6m"], v["applications_count_12m"]) == (0, 1, 1)
    assert all(math.isnan(v[name]) for name in FEATURE_NAMES if name.startswith("bureau_"))
    assert vector.known and vector.position == len(worked_example().made)


def test_a_day_later_the_days_events_count_and_a_day_earlier_is_refused() -> None:
    folder = fold(worked_example().made)
    state = folder.states[C]
    assert state.open_date == date(2026, 6, 15)
    later = compute_vector(state, date(2026, 6, 16), 0).values
    assert later["applications_count_3m"] == 1 and later["tenure_days"] == 126
    with pytest.raises(AsOfNotServable):
        compute_vector(state, date(2026, 6, 14), 0)
    # the batch path serves any date: as of 14 June the casino payment of that day is not there yet
    earlier = compute_vector(fold(worked_example().made, before=date(2026, 6, 14)).states[C], date(2026, 6, 14), 0)
    assert earlier.values["spend_share_gambling_cash_12m"] == 0.0
    assert earlier.values["spend_share_groceries_12m"] == 0.75


def test_a_customer_without_history_has_missing_features_not_zeros() -> None:
    vector = compute_vector(None, date(2026, 6, 1), 7, "cus_new")
    assert not vector.known and vector.customer_id == "cus_new"
    counts = {f"applications_count_{k}m" for k in (3, 6, 12)} | {"bills_paid_count_12m", "repayments_count_12m"}
    for name in FEATURE_NAMES:
        assert (vector.values[name] == 0) if name in counts else math.isnan(vector.values[name]), name
    assert json_values(vector.values)["tenure_days"] is None
    assert json_values(vector.values)["repayments_count_12m"] == 0


def test_months_beyond_twelve_fold_into_the_archive_and_lifetime_totals_stay_exact() -> None:
    e = Events()
    e.lending("line_opened", "old", "2024-01-05", customer_id=C, limit_minor=70_000)
    e.lending("charged_off", "old", "2024-03-05", customer_id=C, account_id="old", principal_minor=0)
    e.lending("days_past_due_changed", "old", "2024-02-05", account_id="old", dpd=60, bucket=3, previous_bucket=0)
    e.lending("application_received", "app", "2025-06-01", customer_id=C)
    state = fold(e.made).states[C]
    assert set(state.months) == {ARCHIVE} and state.open_date == date(2025, 6, 1)
    v = compute_vector(state, date(2025, 6, 2), 0).values
    assert v["charge_offs_count"] == 1 and v["dpd_worst_days_12m"] == 0 and v["delinquencies_count_12m"] == 0
    assert math.isnan(v["line_utilisation_ratio"])  # the charged-off line took its limit with it
    assert v["applications_count_3m"] == 1 and v["tenure_days"] == (date(2025, 6, 2) - date(2024, 1, 5)).days


def test_an_event_committed_after_a_later_one_lands_in_its_own_month() -> None:
    in_order, shuffled = Events(), Events()
    orders = (("2026-01-20", "2026-02-03", "2026-03-04"), ("2026-02-03", "2026-03-04", "2026-01-20"))
    for builder, days in zip((in_order, shuffled), orders, strict=True):
        for day in days:
            builder.payment(day, "top_up", int(day[5:7]) * 1_000)
    a = fold(in_order.made).states[C]
    b = fold(shuffled.made).states[C]
    assert b.first_date == date(2026, 1, 20) and b.open_date == date(2026, 3, 4)
    as_of = date(2026, 4, 1)
    assert compute_vector(a, as_of, 0).values == pytest.approx(compute_vector(b, as_of, 0).values, nan_ok=True)
    assert month_index(date(2026, 1, 20)) in b.months and OPEN_DAY not in b.months


def test_other_currencies_and_unknown_accounts_count_as_activity_only() -> None:
    e = Events()
    e.payment("2026-01-01", "top_up", 50_000)
    e.add("payments.payment_completed", "p", "2026-01-06", kind="top_up", amount_minor=9_999_999, currency="USD",
          payee_customer_id=C)  # fmt: skip
    e.lending("days_past_due_changed", "nobody", "2026-01-07", account_id="nobody", dpd=90, bucket=4, previous_bucket=0)
    e.add("payments.rail_break", "p", "2026-01-08", amount_minor=1)
    folder = fold(e.made)
    v = compute_vector(folder.states[C], date(2026, 2, 1), 0).values
    assert v["inflow_monthly_mean_minor_6m"] == 50_000  # January (complete: the first event fell on the 1st)
    assert math.isnan(v["dpd_worst_days_3m"])  # an account never opened is no credit history
    assert set(folder.states) == {C}


def test_spend_categories_by_merchant_category_code() -> None:
    expected = {"5411": "groceries", "5812": "dining", "4511": "travel", "5541": "travel", "4900": "utilities",
                "4814": "utilities", "7995": "gambling_cash", "6011": "gambling_cash", "4829": "gambling_cash",
                "5732": "other", "": "other", None: "other", "12345": "other", "ab12": "other"}  # fmt: skip
    assert {code: spend_category(code) for code in expected} == expected
    assert set(expected.values()) == set(SPEND_CATEGORIES)


def test_the_feature_table_documents_every_feature() -> None:
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names)) == len(FEATURE_NAMES)
    for feature in FEATURES:
        assert feature.unit and feature.label and len(feature.description) > 30, feature.name
        assert feature.group in GROUP_STATEMENTS, feature.name
        assert (feature.source == "bureau") == feature.name.startswith("bureau_") == (feature.group == "bureau")
    assert set(GROUP_STATEMENTS) == {f.group for f in FEATURES}
    groups = feature_groups(["dpd_worst_days_3m", "dpd_worst_days_12m", "not_a_feature"])
    assert groups == {"dpd_worst_days_3m": "delinquency", "dpd_worst_days_12m": "delinquency"}
    text = feature_reason_texts(["bill_on_time_share_12m"])["bill_on_time_share_12m"]
    assert text == "Bills paid late or not regularly (share of bills paid by the due date: {value})"


def test_the_context_readme_lists_every_feature_with_its_unit() -> None:
    readme = (Path(__file__).resolve().parents[3] / "src" / "creditstack" / "scoring" / "README.md").read_text()
    for feature in FEATURES:
        assert f"| `{feature.name}` | {feature.unit} | {feature.group} |" in readme, feature.name


def test_many_customers_fold_independently() -> None:
    e = worked_example()
    start = date(2026, 1, 1)
    for n in range(5):
        day = (start + timedelta(days=n)).isoformat()
        e.payment(day, "top_up", 10_000, payee=f"cus_{n}")
    folder = fold(e.made)
    assert set(folder.states) == {C, "cus_other", *(f"cus_{n}" for n in range(5))}  # the p2p payer is tracked
    alone = fold(worked_example().made, customers=frozenset({C}))
    assert set(alone.states) == {C}
    as_of = date(2026, 6, 16)
    together = compute_vector(folder.states[C], as_of, 0).values
    assert together == pytest.approx(compute_vector(alone.states[C], as_of, 0).values, nan_ok=True)


def test_postgres_array_literals_quote_what_needs_quoting() -> None:
    """The consumer sends PostgreSQL its rows as array literals (one per column): integers bare, everything
    else double-quoted with backslashes and quotes escaped, dates in ISO 8601, `None` as NULL."""
    from creditstack.scoring.features import _pg_array

    assert _pg_array([1, -2, 30_000_000_000]) == "{1,-2,30000000000}"
    assert _pg_array(["cus_1", 'a"b', "c\\d", "e,f}", None]) == '{"cus_1","a\\"b","c\\\\d","e,f}",NULL}'
    assert _pg_array([date(2026, 3, 1), datetime(2026, 3, 1, 1, tzinfo=UTC)]) == (
        '{"2026-03-01","2026-03-01T01:00:00+00:00"}'
    )
    assert _pg_array([]) == "{}"

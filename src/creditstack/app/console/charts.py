"""Vega-Lite specifications for the console's charts (data, never code: rendered by vega-embed in the page).

Amounts travel as exact decimal strings in major units (`"1234.56"`) and rates as decimal strings
(`"0.034000"`); the spec's `format.parse` turns them into numbers in the browser, for plotting only. Every
mark's tooltip shows the exact formatted text computed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from creditstack.analytics.portfolio import RollRates, VintagePoint, ratio
from creditstack.app.console.reports import DelinquencyMonth
from creditstack.app.console.web import format_minor, major_units, percent

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
HEIGHT = 260
#: Current in green, then ever deeper reds as accounts age (enough for eight buckets).
_BUCKET_COLOURS = ("#4caf7d", "#fdd49e", "#fdbb84", "#fc8d59", "#ef6548", "#d7301f", "#b30000", "#7f0000")
Spec = dict[str, Any]


def _spec(description: str, values: list[dict[str, Any]], parse: Mapping[str, str], **body: Any) -> Spec:
    spec: Spec = {
        "$schema": SCHEMA,
        "description": description,
        "data": {"values": values, "format": {"parse": dict(parse)}},
        "config": {"view": {"stroke": None}, "axis": {"labelLimit": 160}},
    }
    if "vconcat" not in body:  # a concatenation sizes each of its views instead
        spec["width"] = "container"
    return spec | body


def _money_fields(amount_minor: int, currency: str, name: str = "amount") -> dict[str, str]:
    return {name: major_units(amount_minor, currency), f"{name}_text": format_minor(amount_minor, currency)}


def originations(rows: Iterable[Mapping[str, Any]], currency: str) -> Spec:
    """Accounts opened per month and product: amount (principal lent or limit granted) and count."""
    values = [
        {"month": r["month"], "product": r["product_code"], "accounts": r["accounts"]}
        | _money_fields(r["amount_minor"], currency)
        for r in rows
        if r["currency"] == currency
    ]
    tooltip = [
        {"field": "month"},
        {"field": "product"},
        {"field": "accounts", "title": "accounts opened"},
        {"field": "amount_text", "title": "principal or limit"},
    ]
    x = {"field": "month", "type": "ordinal", "title": "month opened"}
    color = {"field": "product", "type": "nominal", "title": "product"}
    return _spec(
        f"Originations per month and product, {currency}",
        values,
        {"amount": "number", "accounts": "number"},
        vconcat=[
            {
                "width": "container",
                "height": HEIGHT,
                "mark": "bar",
                "encoding": {
                    "x": x,
                    "y": {"field": "amount", "type": "quantitative", "title": f"principal or limit ({currency})"},
                    "color": color,
                    "tooltip": tooltip,
                },
            },
            {
                "width": "container",
                "height": HEIGHT // 2,
                "mark": "bar",
                "encoding": {
                    "x": x,
                    "y": {"field": "accounts", "type": "quantitative", "title": "accounts opened"},
                    "color": color,
                    "tooltip": tooltip,
                },
            },
        ],
    )


def balances(rows: Iterable[Mapping[str, Any]], currency: str) -> Spec:
    """Outstanding principal of the active accounts, by product."""
    values = [
        {"product": r["product_code"], "accounts": r["accounts"]} | _money_fields(r["principal_minor"], currency)
        for r in rows
        if r["currency"] == currency and r["status"] == "active"
    ]
    return _spec(
        f"Outstanding principal by product, {currency}",
        values,
        {"amount": "number"},
        height=HEIGHT,
        mark="bar",
        encoding={
            "x": {"field": "product", "type": "nominal", "title": "product", "axis": {"labelAngle": 0}},
            "y": {"field": "amount", "type": "quantitative", "title": f"outstanding principal ({currency})"},
            "color": {"field": "product", "type": "nominal", "legend": None},
            "tooltip": [
                {"field": "product"},
                {"field": "accounts", "title": "active accounts"},
                {"field": "amount_text", "title": "outstanding principal"},
            ],
        },
    )


def delinquency(history: Sequence[DelinquencyMonth], currency: str, labels: Sequence[str]) -> Spec:
    """Balance owed by DPD bucket at each month end (stacked), current at the bottom."""
    values = [
        {
            "month_end": m.month_end.isoformat(),
            "bucket": b.bucket,
            "order": n,
            "accounts": b.accounts,
            "share": str(b.balance_share),
            "share_text": percent(b.balance_share),
        }
        | _money_fields(b.balance_minor, currency)
        for m in history
        for n, b in enumerate(m.buckets)
    ]
    return _spec(
        f"Balance by days-past-due bucket per month end, {currency}",
        values,
        {"amount": "number", "share": "number"},
        height=HEIGHT,
        mark="bar",
        encoding={
            "x": {"field": "month_end", "type": "ordinal", "title": "month end"},
            "y": {"field": "amount", "type": "quantitative", "title": f"balance owed ({currency})"},
            "color": {
                "field": "bucket",
                "type": "ordinal",
                "title": "days past due",
                "scale": {"domain": list(labels), "range": list(_BUCKET_COLOURS[: len(labels)])},
            },
            "order": {"field": "order", "type": "quantitative"},
            "tooltip": [
                {"field": "month_end", "title": "month end"},
                {"field": "bucket", "title": "days past due"},
                {"field": "accounts"},
                {"field": "amount_text", "title": "balance"},
                {"field": "share_text", "title": "share of balance"},
            ],
        },
    )


def vintages(points: Sequence[VintagePoint], metric_title: str) -> Spec:
    """Cumulative bad rate by months on book, one line per origination month."""
    values = [
        {
            "vintage": p.vintage,
            "mob": p.months_on_book,
            "rate": str(p.bad_rate),
            "rate_text": percent(p.bad_rate),
            "bad": p.bad_accounts,
            "accounts": p.accounts,
        }
        for p in points
    ]
    return _spec(
        f"Vintage curves: {metric_title}",
        values,
        {"rate": "number", "mob": "number"},
        height=HEIGHT,
        mark={"type": "line", "point": True},
        encoding={
            "x": {"field": "mob", "type": "quantitative", "title": "months on book", "axis": {"tickMinStep": 1}},
            "y": {"field": "rate", "type": "quantitative", "title": metric_title, "axis": {"format": "%"}},
            "color": {"field": "vintage", "type": "ordinal", "title": "vintage"},
            "tooltip": [
                {"field": "vintage"},
                {"field": "mob", "title": "months on book"},
                {"field": "bad", "title": "bad accounts"},
                {"field": "accounts"},
                {"field": "rate_text", "title": "bad rate"},
            ],
        },
    )


def roll_rates(matrix: RollRates) -> Spec:
    """The transition matrix as a heat map of account rates (rows: state at the from-month)."""
    populations = matrix.populations
    values = [
        {
            "from": row.from_state,
            "to": row.to_state,
            "accounts": row.accounts,
            "rate": str(row.account_rate),
            "rate_text": percent(row.account_rate),
        }
        for row in matrix.rows()
        if populations[row.from_state]
    ]
    encoding = {
        "x": {"field": "to", "type": "nominal", "sort": list(matrix.to_states), "title": f"state {matrix.to_month}"},
        "y": {
            "field": "from",
            "type": "nominal",
            "sort": list(matrix.from_states),
            "title": f"state {matrix.from_month}",
        },
    }
    return _spec(
        f"Roll rates {matrix.from_month} to {matrix.to_month}",
        values,
        {"rate": "number"},
        height=HEIGHT,
        layer=[
            {
                "mark": "rect",
                "encoding": encoding
                | {
                    "color": {
                        "field": "rate",
                        "type": "quantitative",
                        "title": "share of accounts",
                        "scale": {"domain": [0, 1], "scheme": "blues"},
                        "legend": {"format": "%"},
                    },
                    "tooltip": [
                        {"field": "from"},
                        {"field": "to"},
                        {"field": "accounts"},
                        {"field": "rate_text", "title": "share of the from-state"},
                    ],
                },
            },
            {
                "mark": {"type": "text", "fontSize": 11},
                "encoding": encoding
                | {
                    "text": {"field": "rate_text"},
                    "color": {"condition": {"test": "datum.rate > 0.5", "value": "white"}, "value": "black"},
                },
            },
        ],
    )


def partner_exposure(partners: Iterable[Mapping[str, Any]]) -> Spec:
    """How much of each limit each partner bank uses: its outstanding principal with the platform as a share
    of its agreement's exposure cap and of 25 % of its net tier-1 capital (the regulatory limit)."""
    values = []
    for p in partners:
        currency = p["currency"]
        for limit, limit_minor in (
            ("agreement cap", p["cap_minor"]),
            ("25 % of net tier-1 capital", p["tier1_limit_minor"]),
        ):
            used = ratio(p["outstanding_minor"], limit_minor)
            values.append(
                {
                    "partner": p["label"],
                    "limit": limit,
                    "used": str(used),
                    "used_text": percent(used),
                    "outstanding_text": format_minor(p["outstanding_minor"], currency),
                    "limit_text": format_minor(limit_minor, currency),
                }
            )
    limits = ["agreement cap", "25 % of net tier-1 capital"]
    y = {"field": "partner", "type": "nominal", "title": None}
    return _spec(
        "Partner banks' outstanding principal as a share of their limits",
        values,
        {"used": "number"},
        height=max(80, 48 * len({v["partner"] for v in values})),  # a fixed height: `step` fights `container`
        layer=[
            {
                "mark": "bar",
                "encoding": {
                    "y": y,
                    "yOffset": {"field": "limit", "type": "nominal", "sort": limits},
                    "x": {
                        "field": "used",
                        "type": "quantitative",
                        "title": "share of the limit used",
                        "axis": {"format": "%"},
                        "scale": {"domainMin": 0},
                    },
                    "color": {"field": "limit", "type": "nominal", "sort": limits, "title": None},
                    "tooltip": [
                        {"field": "partner"},
                        {"field": "limit"},
                        {"field": "outstanding_text", "title": "outstanding"},
                        {"field": "limit_text", "title": "limit"},
                        {"field": "used_text", "title": "used"},
                    ],
                },
            },
            {"mark": {"type": "rule", "strokeDash": [4, 3]}, "encoding": {"x": {"datum": 1}}},
        ],
    )


def partner_buckets(buckets: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> Spec:
    """The partner's outstanding share by the accounts' delinquency bucket (latest month end)."""
    values = [
        {"bucket": labels.get(key, key), "order": n} | _money_fields(amount["amount_minor"], amount["currency"])
        for n, (key, amount) in enumerate(buckets.items())
    ]
    return _spec(
        "Outstanding participation by delinquency bucket",
        values,
        {"amount": "number"},
        height=HEIGHT,
        mark="bar",
        encoding={
            "x": {
                "field": "bucket",
                "type": "nominal",
                "sort": {"field": "order"},
                "title": "days past due",
                "axis": {"labelAngle": 0},
            },
            "y": {"field": "amount", "type": "quantitative", "title": "outstanding share (major units)"},
            "tooltip": [
                {"field": "bucket", "title": "days past due"},
                {"field": "amount_text", "title": "outstanding"},
            ],
        },
    )


def schedule(instalments: Iterable[Mapping[str, Any]]) -> Spec:
    """A loan's instalments by due date: principal, interest and fees stacked."""
    values = []
    for row in instalments:
        for part in ("principal", "interest", "fees"):
            amount = row[part]
            values.append(
                {"due_date": row["due_date"], "number": row["number"], "part": part}
                | _money_fields(amount["amount_minor"], amount["currency"])
            )
    return _spec(
        "Instalments by due date",
        values,
        {"amount": "number"},
        height=HEIGHT,
        mark="bar",
        encoding={
            "x": {"field": "due_date", "type": "ordinal", "title": "due date"},
            "y": {"field": "amount", "type": "quantitative", "title": "amount due (major units)"},
            "color": {"field": "part", "type": "nominal", "sort": ["principal", "interest", "fees"], "title": None},
            "tooltip": [
                {"field": "number", "title": "instalment"},
                {"field": "due_date", "title": "due date"},
                {"field": "part"},
                {"field": "amount_text", "title": "amount"},
            ],
        },
    )


def statements(rows: Iterable[Mapping[str, Any]]) -> Spec:
    """A line's statement balances by statement date."""
    values = [
        {"statement_date": r["statement_date"]} | _money_fields(r["balance"]["amount_minor"], r["balance"]["currency"])
        for r in rows
    ]
    return _spec(
        "Statement balances",
        values,
        {"amount": "number"},
        height=HEIGHT,
        mark="bar",
        encoding={
            "x": {"field": "statement_date", "type": "ordinal", "title": "statement date"},
            "y": {"field": "amount", "type": "quantitative", "title": "statement balance (major units)"},
            "tooltip": [
                {"field": "statement_date", "title": "statement date"},
                {"field": "amount_text", "title": "balance"},
            ],
        },
    )

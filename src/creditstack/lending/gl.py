"""Lending's chart of accounts in the general ledger, and how subledger movements post to it.

Each product has its own set of general-ledger accounts (code `lending:<product>:<purpose>`), opened
with insert-only balance deltas (they are hot: every repayment touches them). See README.md for the
chart and every entry lending writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from creditstack.ledger.domain import PostEntry, PostingSpec, Side

#: Purpose → ledger account type. Allowance is a contra-asset (an asset account with a credit balance).
CHART: dict[str, str] = {
    "loans_receivable": "asset",
    "interest_receivable": "asset",
    "fees_receivable": "asset",  # fees and penalty interest
    "allowance": "asset",
    "customer_credits": "liability",  # suspense: repayments held for the next due date, refunds beyond principal
    "interest_income": "income",
    "penalty_income": "income",
    "fee_income": "income",
    "recoveries": "income",
    "credit_losses": "expense",
}

#: End-of-day movements (summed per product × currency × business date) → (debit, credit) pairs.
MOVEMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "interest": (("interest_receivable", "interest_income"),),
    "penalty": (("fees_receivable", "penalty_income"),),
    "late_fee": (("fees_receivable", "fee_income"),),
    "conversion_fee": (("fees_receivable", "fee_income"),),
    "credit_to_fees": (("customer_credits", "fees_receivable"),),
    "credit_to_interest": (("customer_credits", "interest_receivable"),),
    "credit_to_principal": (("customer_credits", "loans_receivable"),),
    # charge-off: provide for the loss, then write the receivable off against the allowance
    "charge_off_principal": (("credit_losses", "allowance"), ("allowance", "loans_receivable")),
    "charge_off_interest": (("credit_losses", "allowance"), ("allowance", "interest_receivable")),
    "charge_off_fees": (("credit_losses", "allowance"), ("allowance", "fees_receivable")),
}

LEDGER_MEMBER = "lending"


def account_code(product_code: str, purpose: str) -> str:
    return f"lending:{product_code}:{purpose}"


def debit_normal(purpose: str) -> bool:
    return CHART[purpose] in ("asset", "expense")


@dataclass(frozen=True, slots=True)
class GlAccounts:
    """The ledger account ids of one product's chart."""

    product_code: str
    currency: str
    ids: Mapping[str, int]

    def __getitem__(self, purpose: str) -> int:
        return self.ids[purpose]


def movement_effects(movements: Mapping[str, int]) -> dict[str, int]:
    """The change each movement total makes to each purpose's balance (normal side positive)."""
    effects: dict[str, int] = defaultdict(int)
    for movement, amount in movements.items():
        for debit, credit in MOVEMENTS[movement]:
            effects[debit] += amount if debit_normal(debit) else -amount
            effects[credit] += -amount if debit_normal(credit) else amount
    return dict(effects)


def eod_entry(gl: GlAccounts, business_date_iso: str, movements: Mapping[str, int], key: str) -> PostEntry | None:
    """One balanced entry for a product's end-of-day movements: postings netted per account and side."""
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    for movement, amount in movements.items():
        if amount < 0:
            raise ValueError(f"movement {movement} is negative: {amount}")
        for debit, credit in MOVEMENTS[movement]:
            debits[debit] += amount
            credits[credit] += amount
    postings: list[PostingSpec] = []
    for purpose in sorted(set(debits) | set(credits)):
        net = debits.get(purpose, 0) - credits.get(purpose, 0)
        if net > 0:
            postings.append(PostingSpec(gl[purpose], Side.DEBIT, net, gl.currency))
        elif net < 0:
            postings.append(PostingSpec(gl[purpose], Side.CREDIT, -net, gl.currency))
    if not postings:
        return None
    return PostEntry(
        LEDGER_MEMBER,
        key,
        tuple(postings),
        f"lending end of day {business_date_iso} {gl.product_code}",
        {"business_date": business_date_iso, "product": gl.product_code, "movements": dict(movements)},
    )


def postings(gl: GlAccounts, legs: Iterable[tuple[str | int, Side, int]]) -> tuple[PostingSpec, ...]:
    """Postings from (purpose or ledger account id, side, amount) legs, zero legs dropped."""
    out = []
    for target, side, amount in legs:
        if amount == 0:
            continue
        account_id = gl[target] if isinstance(target, str) else target
        out.append(PostingSpec(account_id, side, amount, gl.currency))
    return tuple(out)

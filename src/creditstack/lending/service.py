"""Lending: products, applications and decisions, offers, disbursement, servicing, lines, reconcile.

The public surface of the lending context. Every money movement goes through `ledger.service`
(`post_in_transaction`, so that the loan's own rows commit atomically with its entry); every mutating call
carries a client key and stores its first outcome; every change writes its outbox events in the same
transaction. End of day lives in `eod`; this module's online paths bring an account that end of day has not
reached yet up to date with the same rules (`_catch_up`) before they change it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import partial
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import business_date as business_dates
from creditstack.core import idempotency
from creditstack.core.clock import Clock
from creditstack.core.db import Database
from creditstack.core.errors import CreditstackError
from creditstack.core.events import DomainEvent, flush_events
from creditstack.core.ids import new_id
from creditstack.core.money import Currency, Money, allocate
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.domain import PostEntry, Side
from creditstack.ledger.service import SERVICE, LedgerService
from creditstack.lending import errors, gl
from creditstack.lending import tables as t
from creditstack.lending.apr import compute_apr, periodic_rate_apr
from creditstack.lending.calendar import add_months
from creditstack.lending.eod import CHUNK_SIZE_DEFAULT, EndOfDay
from creditstack.lending.ports import (
    FundingAllocator,
    FundingRequest,
    OwnFundsAllocator,
    RulesScoreProvider,
    ScoreProvider,
    ScoreRequest,
)
from creditstack.lending.products import (
    DEFAULT_PRODUCTS,
    RATE_SCALE,
    Product,
    ProductKind,
    accrue_day,
    day_units,
    rate_micro,
)
from creditstack.lending.repayments import (
    _PAY_INSTALMENT,
    REPAY_BATCH_MAX,
    Allocation,
    Repayment,
    RepaymentBatch,
    allocate_repayment,
    positive_amount,
)
from creditstack.lending.schedule import build_schedule, reamortise
from creditstack.payments.domain import FundingLeg
from creditstack.payments.service import PaymentsService
from creditstack.policy.domain import BorrowerPosition, RateOffer
from creditstack.policy.evaluate import check_borrower, check_offer_rate, failures, in_force, raise_if_failed

#: An offer stands this many days after the decision.
OFFER_DAYS = 7
#: Most wallets whose ledger account the batch repayment path remembers (the cache is emptied when full).
WALLET_ACCOUNTS_CACHED_MAX = 1_000_000
#: Largest page of a list.
PAGE_MAX = 500
#: The funding source name payments uses for the credit line.
LINE_FUNDING = "credit_line"
#: The console's score histogram: bands of this many points.
DECISION_SCORE_BAND_WIDTH = 20
#: Most stored feature vectors `decision_features` returns, and how many it reads per round trip.
DECISION_FEATURES_MAX = 50_000
DECISION_FEATURES_PAGE = 1_000


# Statements of the online paths, built once (building a statement costs more than running these small ones).
_a, _i = t.accounts.c, t.instalments.c
_ACCOUNT_BY_REF = sa.select(t.accounts).where(_a.ref == sa.bindparam("ref"))
_ACCOUNT_BY_REF_LOCKED = _ACCOUNT_BY_REF.with_for_update()
_ACCOUNT_BY_ID = sa.select(t.accounts).where(_a.id == sa.bindparam("id"))
_ACCOUNT_PRODUCT = sa.select(_a.product_code, _a.currency).where(_a.ref == sa.bindparam("ref"))
_CUSTOMER_ACCOUNTS = sa.select(_a.kind, _a.status, _a.currency, _a.principal_minor, _a.limit_minor, _a.dpd).where(
    _a.customer_id == sa.bindparam("customer")
)
_LINE_OF_CUSTOMER = (
    sa.select(t.accounts)
    .where(
        _a.customer_id == sa.bindparam("customer"),
        _a.kind == "line",
        _a.status == "active",
        _a.currency == sa.bindparam("currency"),
    )
    .order_by(_a.id)
    .limit(1)
)
_LINE_OF_CUSTOMER_LOCKED = _LINE_OF_CUSTOMER.with_for_update()
_INSTALMENTS_TO_BILL = (
    sa.select(t.instalments)
    .where(_i.account_id == sa.bindparam("account"), _i.billed_on.is_(None), _i.due_date <= sa.bindparam("bd"))
    .order_by(_i.number)
)
_OPEN_INSTALMENTS = (
    sa.select(t.instalments)
    .where(_i.account_id == sa.bindparam("account"), _i.billed_on.is_not(None), _i.settled_on.is_(None))
    .order_by(_i.due_date, _i.number)
)
_ACCOUNT_INSTALMENTS = sa.select(t.instalments).where(_i.account_id == sa.bindparam("account")).order_by(_i.number)
_DRAW_ON_LINE = (
    sa.update(t.accounts)
    .where(_a.id == sa.bindparam("account"))
    .values(
        credit_minor=sa.bindparam("credit"),
        principal_minor=sa.bindparam("principal"),
        version=sa.bindparam("new_version"),
    )
)
_INSERT_TRANSACTION = t.transactions.insert()
_INSERT_DRAW = t.draws.insert()


@dataclass(frozen=True, slots=True)
class LendingResult:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False
    #: The batch path's refusals: the error the single call would have raised, as a value.
    error: CreditstackError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": int(amount), "currency": currency}


class LendingService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        payments: PaymentsService,
        *,
        rule_sets: str,
        score_provider: ScoreProvider | None = None,
        funding_allocator: FundingAllocator | None = None,
        eod_chunk_size: int | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.payments = payments
        self.rule_sets = rule_sets
        self.score_provider: ScoreProvider = score_provider or RulesScoreProvider()
        self.funding_allocator: FundingAllocator = funding_allocator or OwnFundsAllocator()
        self._products: dict[str, Product] | None = None
        self._gl: dict[str, gl.GlAccounts] = {}
        self._house_currencies: set[str] = set()  # currencies whose payments house accounts are open
        self._wallet_accounts: dict[str, int] = {}  # wallet id -> its ledger account (the batch path's)
        self._lock = threading.Lock()
        self.eod = EndOfDay(
            db, clock, ledger, self.products, self.gl_accounts, chunk_size=eod_chunk_size or CHUNK_SIZE_DEFAULT
        )
        payments.register_funding_source(LineFunding(self))

    # ------------------------------------------------------------ products and the chart of accounts

    def register_product(self, product: Product) -> Product:
        """Add a product (or replace its terms) and open its general-ledger accounts."""
        p = t.products.c

        def work(conn: Connection) -> None:
            exists = conn.execute(sa.select(p.code).where(p.code == product.code)).first()
            values = {"kind": product.kind.value, "currency": product.currency, "terms": product.to_json()}
            if exists:
                conn.execute(sa.update(t.products).where(p.code == product.code).values(**values))
            else:
                conn.execute(t.products.insert().values(code=product.code, created_at=self.clock.now(), **values))

        self.db.run(work)
        with self._lock:
            self._products = None
        self.gl_accounts(product.code)
        return product

    def ensure_default_products(self) -> None:
        known = self.products()
        for product in DEFAULT_PRODUCTS:
            if product.code not in known:
                self.register_product(product)
            else:
                self.gl_accounts(product.code)
        for currency in {p.currency for p in self.products().values()}:
            self.payments.ensure_house_accounts(currency)
            self._house_currencies.add(currency)

    def products(self) -> dict[str, Product]:
        with self._lock:
            if self._products is None:
                rows = self.db.run(lambda conn: conn.execute(sa.select(t.products)).all(), readonly=True)
                self._products = {row.code: Product.from_json(row.terms) for row in rows}
            return dict(self._products)

    def product(self, code: str) -> Product:
        product = self.products().get(code)
        if product is None:
            raise errors.ProductNotFound(f"no product {code!r}", field="product_code")
        return product

    def gl_accounts(self, product_code: str) -> gl.GlAccounts:
        """The product's ledger accounts, opened on first use (call outside a transaction the first time)."""
        cached = self._gl.get(product_code)
        if cached is not None:
            return cached
        product = self.product(product_code)
        ids: dict[str, int] = {}
        for purpose, account_type in gl.CHART.items():
            code = gl.account_code(product_code, purpose)
            ids[purpose] = self.ledger.ensure_account(
                member=gl.LEDGER_MEMBER,
                code=code,
                currency=product.currency,
                type=account_type,
                uses_deltas=True,
                metadata={"product": product_code, "purpose": purpose},
            ).id
        accounts = gl.GlAccounts(product_code, product.currency, ids)
        self._gl[product_code] = accounts
        return accounts

    # ------------------------------------------------------------ shared machinery

    def _business_date(self, conn: Connection) -> date:
        return business_dates.current(conn, PLATFORM_CORE, SERVICE)

    def _idempotent(
        self,
        member: str,
        key: str,
        operation: str,
        request: dict[str, Any],
        work: Callable[[Connection], tuple[int, dict[str, Any]]],
    ) -> LendingResult:
        idempotency.check_key(key)
        request_hash = idempotency.request_hash(operation, request)

        def once(conn: Connection) -> LendingResult:
            status_code, body, replayed = idempotency.once(
                conn,
                PLATFORM_CORE,
                member=member,
                key=key,
                operation=operation,
                request_hash_value=request_hash,
                work=lambda: work(conn),
                now=self.clock.now(),
            )
            return LendingResult(status_code, body, replayed=replayed)

        return self.db.run(once)

    def _post(self, conn: Connection, entry: PostEntry) -> int:
        result = self.ledger.post_in_transaction(conn, [entry])[0]
        if not result.ok:
            code = result.error_code or "unknown"
            if code == "ledger.insufficient_funds":
                raise _InsufficientFunds(code)
            raise errors.LedgerRefused(f"the ledger refused {entry.key}: {code}")
        return int(result.entry_seq or 0)

    def _lock_account(self, conn: Connection, ref: str, owner: str | None = None) -> Any:
        query = _ACCOUNT_BY_REF_LOCKED if self.db.is_postgres else _ACCOUNT_BY_REF
        row = conn.execute(query, {"ref": ref}).one_or_none()
        if row is None or (owner is not None and row.customer_id != owner):
            raise errors.AccountNotFound(f"no loan or line {ref}", field="account_id")
        return row

    def _transaction(
        self,
        conn: Connection,
        account_id: int,
        kind: str,
        bd: date,
        reference: str,
        ledger_key: str | None,
        **amounts: Any,
    ) -> None:
        details = amounts.pop("details", {})
        conn.execute(
            _INSERT_TRANSACTION,
            {
                "account_id": account_id,
                "kind": kind,
                "business_date": bd,
                "reference": reference,
                "ledger_key": ledger_key,
                "details": details,
                "created_at": self.clock.now(),
                **{f"{k}_minor" if not k.endswith("_minor") else k: v for k, v in amounts.items()},
            },
        )

    def _event(self, topic: str, account_ref: str, bd: date, payload: dict[str, Any]) -> DomainEvent:
        return DomainEvent(f"lending.{topic}", account_ref, bd, payload)

    # ------------------------------------------------------------ catching up with end of day

    def _catch_up(self, conn: Connection, row: Any, bd: date, events: list[DomainEvent]) -> Any:
        """Apply what end of day for bd−1 will do to this account and has not done yet: the day's accrual
        and the billing of instalments due on bd. Same rules as the SQL; the EOD chunk then skips it."""
        day = bd - timedelta(days=1)
        updates: dict[str, Any] = {}
        if row.status == "active" and row.accrued_through < day:
            if row.accrued_through < day - timedelta(days=1):
                raise errors.EodOutOfOrder(
                    f"end of day is behind: {row.ref} accrued through {row.accrued_through}, business date {bd}"
                )
            product = self.product(row.product_code)
            n = day_units(product.day_count, day)
            if row.kind == "line":
                base = 0 if row.grace == 1 else row.principal_minor - row.converted_unbilled_minor
            else:
                base = row.principal_minor
            base *= row.accruing
            interest, carry = accrue_day(base, row.rate_micro, n, row.days_per_year, row.carry)
            penalty, penalty_carry = accrue_day(
                row.overdue_principal_minor * row.accruing,
                row.penalty_rate_micro,
                n,
                row.days_per_year,
                row.penalty_carry,
            )
            updates.update(
                interest_unbilled_minor=row.interest_unbilled_minor + interest,
                interest_accrued_minor=row.interest_accrued_minor + interest,
                last_interest_minor=interest,
                carry=carry,
                penalty_minor=row.penalty_minor + penalty,
                penalty_accrued_minor=row.penalty_accrued_minor + penalty,
                last_penalty_minor=penalty,
                penalty_carry=penalty_carry,
                accrued_through=day,
                last_accrual_on=day,
            )
        if updates:
            conn.execute(sa.update(t.accounts).where(t.accounts.c.id == row.id).values(**updates))
            row = conn.execute(sa.select(t.accounts).where(t.accounts.c.id == row.id)).one()
        if row.status == "active":
            row = self._bill_online(conn, row, bd, day, events)
        return row

    def _bill_online(self, conn: Connection, row: Any, bd: date, day: date, events: list[DomainEvent]) -> Any:
        if self.eod.complete_through is not None and self.eod.complete_through >= day:
            # end of day for `day` billed every active account's rows due by bd, and rows written since
            # (schedules, conversions, re-amortisations) fall due later: nothing to bill, no need to look
            return row
        i = t.instalments.c
        due = conn.execute(_INSTALMENTS_TO_BILL, {"account": row.id, "bd": bd}).all()
        if not due:
            return row
        gla = self.gl_accounts(row.product_code)
        interest_unbilled = row.interest_unbilled_minor
        principal_billed = row.principal_billed_minor
        interest_billed = row.interest_billed_minor
        fees = row.fees_minor
        fees_charged = row.fees_charged_minor
        converted = row.converted_unbilled_minor
        credit = row.credit_minor
        principal = row.principal_minor
        conversion_fees = 0
        credit_fees = credit_interest = credit_principal = 0
        for inst in due:
            values: dict[str, Any] = {"billed_on": day, "billed_online": 1}
            interest_due = inst.interest_due
            if inst.kind == "scheduled":
                interest_due = interest_unbilled
                values["interest_due"] = interest_due
                interest_billed += interest_unbilled
                interest_unbilled = 0
            principal_billed += inst.principal_due
            fees += inst.fee_due
            fees_charged += inst.fee_due
            if inst.kind == "conversion":
                converted -= inst.principal_due
                conversion_fees += inst.fee_due
            if inst.kind in ("scheduled", "conversion") and credit > 0:  # fee, then interest, then principal
                to_fee = min(inst.fee_due, credit)
                to_interest = min(interest_due, credit - to_fee)
                to_principal = min(inst.principal_due, credit - to_fee - to_interest)
                credit -= to_fee + to_interest + to_principal
                credit_fees += to_fee
                credit_interest += to_interest
                credit_principal += to_principal
                fees -= to_fee
                interest_billed -= to_interest
                principal_billed -= to_principal
                principal -= to_principal
                values.update(fee_paid=to_fee, interest_paid=to_interest, principal_paid=to_principal)
                if to_fee == inst.fee_due and to_interest == interest_due and to_principal == inst.principal_due:
                    values["settled_on"] = bd
            conn.execute(
                sa.update(t.instalments).where(i.account_id == row.id, i.number == inst.number).values(**values)
            )
        legs: list[tuple[str | int, Side, int]] = []
        fees_net = conversion_fees - credit_fees  # fees receivable: charged, less what the credit paid at once
        if conversion_fees:
            legs.append(("fee_income", Side.CREDIT, conversion_fees))
        if fees_net:
            legs.append(("fees_receivable", Side.DEBIT if fees_net > 0 else Side.CREDIT, abs(fees_net)))
        if credit_fees or credit_interest or credit_principal:
            legs += [
                ("customer_credits", Side.DEBIT, credit_fees + credit_interest + credit_principal),
                ("interest_receivable", Side.CREDIT, credit_interest),
                ("loans_receivable", Side.CREDIT, credit_principal),
            ]
        if legs:
            self._post(
                conn,
                PostEntry(
                    gl.LEDGER_MEMBER,
                    f"lending:{row.ref}:bill:{day.isoformat()}",
                    gl.postings(gla, legs),
                    f"billing {row.ref} (ahead of end of day {day.isoformat()})",
                ),
            )
        conn.execute(
            sa.update(t.accounts)
            .where(t.accounts.c.id == row.id)
            .values(
                interest_unbilled_minor=interest_unbilled,
                interest_billed_minor=interest_billed,
                principal_billed_minor=principal_billed,
                fees_minor=fees,
                fees_charged_minor=fees_charged,
                converted_unbilled_minor=converted,
                credit_minor=credit,
                principal_minor=principal,
                version=row.version + 1,
            )
        )
        return conn.execute(sa.select(t.accounts).where(t.accounts.c.id == row.id)).one()

    # ------------------------------------------------------------ applications, decisions, offers

    def _exposure(self, conn: Connection, customer_id: str, currency: str) -> dict[str, Any]:
        every = conn.execute(_CUSTOMER_ACCOUNTS, {"customer": customer_id}).all()  # one read, every currency
        closed_repaid = sum(1 for r in every if r.status == "closed")
        rows = [r for r in every if r.currency == currency]
        active = [r for r in rows if r.status == "active"]
        return {
            "outstanding_principal_minor": sum(r.principal_minor for r in active if r.kind == "loan"),
            "line_limits_minor": sum(r.limit_minor for r in active if r.kind == "line"),
            "worst_dpd": max((r.dpd for r in active), default=0),
            "charged_off_before": any(r.status == "charged_off" for r in rows),
            "accounts_repaid": int(closed_repaid),
            "has_active_line": any(r.kind == "line" for r in active),
        }

    def apply(
        self,
        *,
        member: str,
        key: str,
        customer_id: str,
        wallet_id: str,
        product_code: str,
        amount_minor: int,
        term_months: int | None = None,
        income_3y_average_minor: int | None = None,
        military_covered: bool = False,
        owner: str | None = None,
    ) -> LendingResult:
        """Score, check the rules in force, and decide; an approval carries an offer (rate, APR, total cost).

        A decline is stored with every input and reason and answered with `lending.application_declined`
        (409), naming the failing rule ids and their numbers or the score reasons."""
        product = self.product(product_code)
        if owner is not None and owner != customer_id:
            raise errors.InvalidApplication("a consumer applies for themself", field="customer_id")
        if type(amount_minor) is not int or not product.amount_min_minor <= amount_minor <= product.amount_max_minor:
            raise errors.InvalidApplication(
                f"amount must be {product.amount_min_minor}–{product.amount_max_minor} minor units",
                field="amount_minor",
            )
        if product.kind is ProductKind.INSTALMENT:
            if type(term_months) is not int or not product.term_months_min <= term_months <= product.term_months_max:
                raise errors.InvalidApplication(
                    f"term must be {product.term_months_min}–{product.term_months_max} months", field="term_months"
                )
        elif term_months is not None:
            raise errors.InvalidApplication("a credit line has no term", field="term_months")
        if income_3y_average_minor is not None and (
            type(income_3y_average_minor) is not int or income_3y_average_minor < 0
        ):
            raise errors.InvalidApplication("income must be a non-negative integer", field="income_3y_average_minor")
        request = {
            "customer_id": customer_id,
            "wallet_id": wallet_id,
            "product_code": product_code,
            "amount_minor": amount_minor,
            "term_months": term_months,
            "income_3y_average_minor": income_3y_average_minor,
            "military_covered": military_covered,
        }

        def work(conn: Connection) -> tuple[int, dict[str, Any]]:
            # checked here, after the key's stored outcome (if any) is replayed: a later change of the wallet
            # does not turn a replay into an error
            _, wallet_customer, wallet_currency, wallet_status = self.payments.wallet_ledger_account(wallet_id)
            if wallet_customer != customer_id or wallet_currency != product.currency or wallet_status != "active":
                raise errors.InvalidApplication(
                    "the wallet must be the applicant's, active, in the product's currency", field="wallet_id"
                )
            bd = self._business_date(conn)
            income = income_3y_average_minor
            income_source = "declared"
            if income is None:
                found = self.payments.average_annual_income(customer_id, bd)
                income = found.amount_minor if found is not None else None
                income_source = "registered" if found is not None else "none"
            exposure = self._exposure(conn, customer_id, product.currency)
            application_id = new_id("app")
            score = self.score_provider.score(
                ScoreRequest(
                    customer_id=customer_id,
                    product_code=product.code,
                    currency=product.currency,
                    amount_minor=amount_minor,
                    income_3y_average_minor=income,
                    existing_principal_minor=exposure["outstanding_principal_minor"],
                    worst_dpd_now=exposure["worst_dpd"],
                    charged_off_before=exposure["charged_off_before"],
                    accounts_repaid=exposure["accounts_repaid"],
                )
            )
            offer = self._offer(product, amount_minor, term_months, score.grade, bd)
            rules = in_force(self.rule_sets, bd)
            currency = Currency.of(product.currency)
            position = BorrowerPosition(
                borrower_kind="natural_person",
                purpose="consumer",
                new_principal=Money(amount_minor, currency),
                outstanding_principal=Money(exposure["outstanding_principal_minor"], currency),
                credit_line_limits=Money(exposure["line_limits_minor"], currency),
                income_3y_average=Money(income, currency) if income is not None else None,
            )
            checks = check_borrower(position, rules) + check_offer_rate(
                RateOffer(apr_all_in=Decimal(offer["apr"]) / 100, military_covered=military_covered), rules
            )
            failed = failures(checks)
            reasons = [{"source": "policy", **c.to_dict()} for c in failed]
            if not score.approve:
                reasons += [{"source": "score", "code": r.code, "reason": r.text} for r in score.reasons]
            if product.kind is ProductKind.LINE and exposure["has_active_line"]:
                reasons.append({"source": "product", "code": "P01", "reason": "one open credit line per currency"})
            approved = not reasons
            decision = {
                "outcome": "approved" if approved else "declined",
                "business_date": bd.isoformat(),
                "score": score.to_json(),
                "rule_sets": self.rule_sets,
                "checks": [c.to_dict() for c in checks],
                "reasons": reasons,
                "income_3y_average_minor": income,
                "income_source": income_source,
                "exposure": exposure,
            }
            now = self.clock.now()
            conn.execute(
                t.applications.insert().values(
                    id=application_id,
                    member=member,
                    customer_id=customer_id,
                    wallet_id=wallet_id,
                    product_code=product.code,
                    currency=product.currency,
                    amount_minor=amount_minor,
                    term_months=term_months,
                    status="approved" if approved else "declined",
                    business_date=bd,
                    inputs=request,
                    decision=decision,
                    offer=offer if approved else None,
                    created_at=now,
                    updated_at=now,
                )
            )
            body = self._application_json(
                application_id, customer_id, product, amount_minor, term_months, decision, offer if approved else None
            )
            flush_events(
                conn,
                PLATFORM_CORE,
                [
                    DomainEvent(
                        "lending.application_received",
                        application_id,
                        bd,
                        {"customer_id": customer_id, "product_code": product.code, "amount_minor": amount_minor},
                    ),
                    DomainEvent(
                        "lending.application_decided",
                        application_id,
                        bd,
                        {"customer_id": customer_id, "outcome": decision["outcome"], "score": score.score},
                    ),
                ],
                now,
            )
            if approved:
                return 201, body
            error = errors.ApplicationDeclined(
                "; ".join(f"{r['code'] if 'code' in r else r.get('rule_id')}: {r['reason']}" for r in reasons),
                application_id=application_id,
                reasons=reasons,
            )
            return 409, {**body, "error": error.to_dict()}

        return self._idempotent(member, key, "lending.apply", request, work)

    def _offer(
        self, product: Product, amount_minor: int, term_months: int | None, grade: Decimal, bd: date
    ) -> dict[str, Any]:
        rate = product.rate_for_grade(grade)
        currency = Currency.of(product.currency)
        if product.kind is ProductKind.LINE:
            line_apr = periodic_rate_apr(rate / product.days_per_year, product.days_per_year)
            return {
                "kind": "line",
                "limit": _money(amount_minor, product.currency),
                "annual_rate": str(rate),
                "apr": f"{line_apr:.2f}",
                "apr_method": "periodic rate × periods per year (Regulation Z §1026.14(b))",
                "statement_day": product.statement_day,
                "due_days": product.due_days,
                "expires_on": (bd + timedelta(days=OFFER_DAYS)).isoformat(),
            }
        assert term_months is not None
        schedule = self._schedule(product, Money(amount_minor, currency), rate, term_months, bd)
        fee = (amount_minor * product.origination_fee_bps + 5_000) // 10_000
        apr = compute_apr([(bd, amount_minor - fee)], [(r.due_date, r.instalment.amount_minor) for r in schedule.rows])
        return {
            "kind": "instalment",
            "principal": _money(amount_minor, product.currency),
            "term_months": term_months,
            "annual_rate": str(rate),
            "origination_fee": _money(fee, product.currency),
            "apr": f"{apr.apr:.2f}",
            "apr_method": "actuarial (Regulation Z Appendix J)",
            "total_interest": _money(schedule.total_interest.amount_minor, product.currency),
            "total_cost": _money(schedule.total_interest.amount_minor + fee, product.currency),
            "first_due_date": schedule.rows[0].due_date.isoformat(),
            "instalment": _money(schedule.rows[0].instalment.amount_minor, product.currency),
            "expires_on": (bd + timedelta(days=OFFER_DAYS)).isoformat(),
        }

    def _schedule(self, product: Product, principal: Money, rate: Decimal, term_months: int, start: date) -> Any:
        return build_schedule(
            principal,
            rate,
            term_months,
            start,
            method=product.amortisation,
            day_count=product.day_count,
            calendar=product.calendar,
            roll=product.roll,
        )

    def _application_json(
        self,
        application_id: str,
        customer_id: str,
        product: Product,
        amount_minor: int,
        term_months: int | None,
        decision: dict[str, Any],
        offer: dict[str, Any] | None,
        status: str | None = None,
        account_ref: str | None = None,
    ) -> dict[str, Any]:
        return {
            "application_id": application_id,
            "customer_id": customer_id,
            "product_code": product.code,
            "amount": _money(amount_minor, product.currency),
            "term_months": term_months,
            "status": status or decision["outcome"],
            "decision": decision,
            "offer": offer,
            "account_id": account_ref,
        }

    def get_application(self, application_id: str, *, owner: str | None = None) -> dict[str, Any]:
        a = t.applications.c
        row = self.db.run(
            lambda conn: conn.execute(sa.select(t.applications).where(a.id == application_id)).one_or_none(),
            readonly=True,
        )
        if row is None or (owner is not None and row.customer_id != owner):
            raise errors.ApplicationNotFound(f"no application {application_id}", field="application_id")
        account_ref = None
        if row.account_id is not None:
            account_ref = self.db.run(
                lambda conn: conn.execute(
                    sa.select(t.accounts.c.ref).where(t.accounts.c.id == row.account_id)
                ).scalar_one(),
                readonly=True,
            )
        return self._application_json(
            row.id,
            row.customer_id,
            self.product(row.product_code),
            row.amount_minor,
            row.term_months,
            row.decision,
            row.offer,
            row.status,
            account_ref,
        )

    # ------------------------------------------------------------ acceptance, funding, disbursement

    def accept(self, *, member: str, key: str, application_id: str, owner: str | None = None) -> LendingResult:
        """Accept an approved offer: re-check the borrower caps, allocate funding, open the account and
        disburse a loan into the consumer's wallet (a line opens with its limit)."""
        request = {"application_id": application_id}

        def work(conn: Connection) -> tuple[int, dict[str, Any]]:
            a = t.applications.c
            query = sa.select(t.applications).where(a.id == application_id)
            if self.db.is_postgres:
                query = query.with_for_update()
            app = conn.execute(query).one_or_none()
            if app is None or (owner is not None and app.customer_id != owner):
                raise errors.ApplicationNotFound(f"no application {application_id}", field="application_id")
            self._lock_customer(conn, app.customer_id)
            bd = self._business_date(conn)
            if app.status != "approved":
                raise errors.ApplicationNotAcceptable(f"application {application_id} is {app.status}")
            offer: dict[str, Any] = dict(app.offer or {})
            if date.fromisoformat(offer["expires_on"]) < bd:
                raise errors.ApplicationNotAcceptable(f"the offer expired on {offer['expires_on']}")
            product = self.product(app.product_code)
            currency = Currency.of(product.currency)
            exposure = self._exposure(conn, app.customer_id, product.currency)
            if product.kind is ProductKind.LINE and exposure["has_active_line"]:
                raise errors.ApplicationNotAcceptable("the customer already has an open credit line")
            income = app.decision.get("income_3y_average_minor")
            position = BorrowerPosition(
                borrower_kind="natural_person",
                purpose="consumer",
                new_principal=Money(app.amount_minor, currency),
                outstanding_principal=Money(exposure["outstanding_principal_minor"], currency),
                credit_line_limits=Money(exposure["line_limits_minor"], currency),
                income_3y_average=Money(income, currency) if income is not None else None,
            )
            raise_if_failed(check_borrower(position, in_force(self.rule_sets, bd)))
            rate = Decimal(offer["annual_rate"])
            ref = new_id("loan" if product.kind is ProductKind.INSTALMENT else "line")
            # who funds it: the allocator writes its own rows (participations, exposure) in this transaction
            shares = self.funding_allocator.allocate(
                conn,
                FundingRequest(
                    product.code,
                    product.currency,
                    app.amount_minor,
                    int(app.decision["score"]["score"]),
                    app.customer_id,
                    account_ref=ref,
                    kind="loan" if product.kind is ProductKind.INSTALMENT else "line",
                    term_months=app.term_months,
                    rate_micro=rate_micro(rate),
                    business_date=bd,
                ),
            )
            if sum(s.principal_minor for s in shares) != app.amount_minor or any(s.principal_minor < 0 for s in shares):
                raise errors.LedgerRefused("the funding allocation does not add up to the principal")
            wallet_account = self.payments.wallet_ledger_account(app.wallet_id)[0]
            values: dict[str, Any] = {
                "ref": ref,
                "application_id": app.id,
                "customer_id": app.customer_id,
                "wallet_id": app.wallet_id,
                "product_code": product.code,
                "kind": "loan" if product.kind is ProductKind.INSTALMENT else "line",
                "currency": product.currency,
                "status": "active",
                "accruing": 1,
                "opened_on": bd,
                "rate_micro": rate_micro(rate),
                "penalty_rate_micro": rate_micro(product.penalty_rate),
                "days_per_year": product.days_per_year,
                "day_count": product.day_count.value,
                "accrued_through": bd - timedelta(days=1),
                "funding": {"shares": [s.to_json() for s in shares]},
                "version": 0,
            }
            events: list[DomainEvent] = []
            gla = self.gl_accounts(product.code)
            if product.kind is ProductKind.LINE:
                values.update(limit_minor=app.amount_minor, statement_day=product.statement_day, grace=1)
                account_id = self._insert_account(conn, values)
                events.append(
                    self._event(
                        "line_opened",
                        ref,
                        bd,
                        {"customer_id": app.customer_id, "limit_minor": app.amount_minor, "currency": product.currency},
                    )
                )
            else:
                schedule = self._schedule(product, Money(app.amount_minor, currency), rate, app.term_months, bd)
                fee = (app.amount_minor * product.origination_fee_bps + 5_000) // 10_000
                values.update(
                    limit_minor=app.amount_minor,
                    original_principal_minor=app.amount_minor,
                    principal_minor=app.amount_minor,
                    origination_fee_minor=fee,
                    instalment_minor=schedule.level_minor,
                    maturity_date=schedule.maturity_date,
                )
                account_id = self._insert_account(conn, values)
                conn.execute(
                    t.instalments.insert(),
                    [
                        {
                            "account_id": account_id,
                            "number": row.number,
                            "kind": "scheduled",
                            "due_date": row.due_date,
                            "principal_due": row.principal.amount_minor,
                            "interest_due": row.interest.amount_minor,  # the plan; billing sets the accrued figure
                        }
                        for row in schedule.rows
                    ],
                )
                ledger_key = f"lending:{ref}:disbursement"
                self._post(
                    conn,
                    PostEntry(
                        gl.LEDGER_MEMBER,
                        ledger_key,
                        gl.postings(
                            gla,
                            [
                                ("loans_receivable", Side.DEBIT, app.amount_minor),
                                (wallet_account, Side.CREDIT, app.amount_minor - fee),
                                ("fee_income", Side.CREDIT, fee),
                            ],
                        ),
                        f"disbursement {ref}",
                    ),
                )
                self._transaction(
                    conn,
                    account_id,
                    "disbursement",
                    bd,
                    ref,
                    ledger_key,
                    amount=app.amount_minor,
                    principal=app.amount_minor,
                    fees=fee,
                )
                events.append(
                    self._event(
                        "loan_disbursed",
                        ref,
                        bd,
                        {
                            "customer_id": app.customer_id,
                            "principal_minor": app.amount_minor,
                            "currency": product.currency,
                            "term_months": app.term_months,
                            "funding": [s.to_json() for s in shares],
                        },
                    )
                )
            now = self.clock.now()
            conn.execute(
                sa.update(t.applications)
                .where(a.id == app.id)
                .values(status="accepted", account_id=account_id, updated_at=now)
            )
            flush_events(conn, PLATFORM_CORE, events, now)
            return 201, self._account_json(conn, conn.execute(_ACCOUNT_BY_ID, {"id": account_id}).one())

        return self._idempotent(member, key, "lending.accept", request, work)

    def _lock_customer(self, conn: Connection, customer_id: str) -> None:
        """Serialise the acceptances of one customer: the borrower caps read the customer's exposure, and
        two acceptances read under READ COMMITTED would both pass. (SQLite writers are serialised already.)"""
        if self.db.is_postgres:
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"lending:customer:{customer_id}"}
            )

    @staticmethod
    def _insert_account(conn: Connection, values: dict[str, Any]) -> int:
        key = conn.execute(t.accounts.insert().values(**values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    # ------------------------------------------------------------ reading accounts

    def _account_json(
        self, conn: Connection, row: Any, *, with_rows: bool = True, rows: Sequence[Any] | None = None
    ) -> dict[str, Any]:
        """The account as answered; with its instalments (`rows` when the caller holds them, in number
        order, else read)."""
        c = row.currency
        owed = (
            row.principal_minor
            + row.interest_unbilled_minor
            + row.interest_billed_minor
            + row.fees_minor
            + row.penalty_minor
        )
        body: dict[str, Any] = {
            "account_id": row.ref,
            "position": int(row.id),  # the paging cursor of list_accounts (`after`)
            "kind": row.kind,
            "customer_id": row.customer_id,
            "wallet_id": row.wallet_id,
            "product_code": row.product_code,
            "status": row.status,
            "accruing": bool(row.accruing),
            "opened_on": _iso(row.opened_on),
            "closed_on": _iso(row.closed_on),
            "charged_off_on": _iso(row.charged_off_on),
            "annual_rate": str(Decimal(row.rate_micro) / RATE_SCALE),
            "balances": {
                "principal": _money(row.principal_minor, c),
                "principal_billed": _money(row.principal_billed_minor, c),
                "interest_accrued_unbilled": _money(row.interest_unbilled_minor, c),
                "interest_billed": _money(row.interest_billed_minor, c),
                "penalty_interest": _money(row.penalty_minor, c),
                "fees": _money(row.fees_minor, c),
                "credit": _money(row.credit_minor, c),
                "total_owed": _money(owed - row.credit_minor, c),
            },
            "accrued_through": _iso(row.accrued_through),
            "days_past_due": row.dpd,
            "bucket": row.bucket,
            "past_due_since": _iso(row.past_due_since),
            "first_delinquent_on": _iso(row.first_delinquent_on),
            "charged_off": _money(
                row.charged_off_principal_minor + row.charged_off_interest_minor + row.charged_off_fees_minor, c
            ),
            "recovered": _money(row.recovered_minor, c),
            "funding": row.funding,
        }
        if row.kind == "line":
            body["limit"] = _money(row.limit_minor, c)
            body["available"] = _money(max(0, row.limit_minor - owed + row.credit_minor), c)
            body["interest_free"] = bool(row.grace)
            body["statement_day"] = row.statement_day
            body["statement"] = (
                None
                if row.stmt_date is None
                else {
                    "statement_date": _iso(row.stmt_date),
                    "due_date": _iso(row.stmt_due_date),
                    "balance": _money(row.stmt_balance_minor, c),
                    "paid": _money(row.stmt_paid_minor, c),
                    "converted": bool(row.stmt_converted),
                }
            )
        else:
            body["original_principal"] = _money(row.original_principal_minor, c)
            body["maturity_date"] = _iso(row.maturity_date)
            body["instalment"] = _money(row.instalment_minor, c)
        if with_rows:
            if rows is None:
                rows = conn.execute(_ACCOUNT_INSTALMENTS, {"account": row.id}).all()
            body["instalments"] = [  # `_money` and `_iso` written out: thousands of rows per repayments batch
                {
                    "number": r.number,
                    "kind": r.kind,
                    "due_date": r.due_date.isoformat(),
                    "billed": r.billed_on is not None,
                    "principal": {"amount_minor": int(r.principal_due), "currency": c},
                    "interest": {"amount_minor": int(r.interest_due), "currency": c},
                    "fees": {"amount_minor": int(r.fee_due), "currency": c},
                    "paid": {"amount_minor": int(r.principal_paid + r.interest_paid + r.fee_paid), "currency": c},
                    "settled_on": None if r.settled_on is None else r.settled_on.isoformat(),
                }
                for r in rows
            ]
        return body

    def get_account(self, ref: str, *, owner: str | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = conn.execute(sa.select(t.accounts).where(t.accounts.c.ref == ref)).one_or_none()
            if row is None or (owner is not None and row.customer_id != owner):
                raise errors.AccountNotFound(f"no loan or line {ref}", field="account_id")
            return self._account_json(conn, row)

        return self.db.run(work, readonly=True)

    def list_accounts(
        self, *, customer_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        limit = max(1, min(limit, PAGE_MAX))
        a = t.accounts.c

        def work(conn: Connection) -> list[dict[str, Any]]:
            query = sa.select(t.accounts).where(a.id > after).order_by(a.id).limit(limit)
            if customer_id is not None:
                query = query.where(a.customer_id == customer_id)
            return [self._account_json(conn, row, with_rows=False) for row in conn.execute(query).all()]

        return self.db.run(work, readonly=True)

    def amounts_due(self, *, after: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Accounts a borrower has something to pay on now, in one read (a collections queue, and what the
        simulation's borrowers look at): active accounts with billed, unpaid principal, interest, penalty
        or fees beyond their credit, and charged-off accounts with a balance left to recover. Amounts are
        integer minor units; `due_minor` is what clears everything billed; for a line `statement_remaining_minor`
        is what pays the last statement in full. Paged by `position` (`after`)."""
        a = t.accounts.c
        billed = a.principal_billed_minor + a.interest_billed_minor + a.penalty_minor + a.fees_minor - a.credit_minor
        unrecovered = (
            a.charged_off_principal_minor + a.charged_off_interest_minor + a.charged_off_fees_minor - a.recovered_minor
        )
        limit = max(1, min(limit, 100_000))

        def work(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                sa.select(
                    a.id,
                    a.ref,
                    a.customer_id,
                    a.kind,
                    a.status,
                    a.currency,
                    a.dpd,
                    billed.label("due"),
                    (a.stmt_balance_minor - a.stmt_paid_minor).label("stmt_left"),
                    a.stmt_due_date,
                    unrecovered.label("unrecovered"),
                )
                .where(
                    a.id > after,
                    sa.or_(
                        sa.and_(a.status == "active", billed > 0),
                        sa.and_(a.status == "charged_off", unrecovered > 0),
                    ),
                )
                .order_by(a.id)
                .limit(limit)
            ).all()
            return [
                {
                    "position": int(r.id),
                    "account_id": r.ref,
                    "customer_id": r.customer_id,
                    "kind": r.kind,
                    "status": r.status,
                    "currency": r.currency,
                    "days_past_due": int(r.dpd),
                    "due_minor": int(r.due) if r.status == "active" else 0,
                    "statement_remaining_minor": max(0, int(r.stmt_left or 0)) if r.kind == "line" else 0,
                    "statement_due_date": _iso(r.stmt_due_date),
                    "unrecovered_minor": int(r.unrecovered) if r.status == "charged_off" else 0,
                }
                for r in rows
            ]

        return self.db.run(work, readonly=True)

    def account_months(self, account_refs: Sequence[str], month_end: date | None = None) -> list[dict[str, Any]]:
        """Month-end snapshots of the given accounts (default: the latest month end written): balance, past
        due, days past due, bucket, status — what co-lending's partner view and reports read. Found through
        the accounts' ref index and the snapshots' key (month end, account id): one probe per account, not a
        scan of the month's snapshot (a partner's portfolio at 100,000 accounts took seconds)."""
        m, a = t.snapshots.c, t.accounts.c

        def work(conn: Connection) -> list[dict[str, Any]]:
            month = month_end or conn.execute(sa.select(sa.func.max(m.month_end))).scalar_one_or_none()
            if month is None:
                return []
            out: list[dict[str, Any]] = []
            refs = list(account_refs)
            for start in range(0, len(refs), 1_000):
                rows = conn.execute(
                    sa.select(t.snapshots)
                    .select_from(t.accounts.join(t.snapshots, m.account_id == a.id))
                    .where(a.ref.in_(refs[start : start + 1_000]), m.month_end == month)
                ).all()
                out += [
                    {
                        "month_end": _iso(r.month_end),
                        "account_id": r.ref,
                        "product_code": r.product_code,
                        "balance_minor": int(r.balance_minor),
                        "principal_minor": int(r.principal_minor),
                        "past_due_minor": int(r.past_due_minor),
                        "dpd": int(r.dpd),
                        "bucket": int(r.bucket),
                        "status": r.status,
                    }
                    for r in rows
                ]
            return out

        return self.db.run(work, readonly=True)

    def statements(self, ref: str, *, owner: str | None = None) -> list[dict[str, Any]]:
        def work(conn: Connection) -> list[dict[str, Any]]:
            row = conn.execute(sa.select(t.accounts).where(t.accounts.c.ref == ref)).one_or_none()
            if row is None or (owner is not None and row.customer_id != owner):
                raise errors.AccountNotFound(f"no loan or line {ref}", field="account_id")
            s = t.statements.c
            rows = conn.execute(
                sa.select(t.statements).where(s.account_id == row.id).order_by(s.statement_date.desc()).limit(PAGE_MAX)
            ).all()
            c = row.currency
            return [
                {
                    "statement_date": _iso(r.statement_date),
                    "due_date": _iso(r.due_date),
                    "balance": _money(r.balance_minor, c),
                    "principal": _money(r.principal_minor, c),
                    "interest": _money(r.interest_minor, c),
                    "fees": _money(r.fees_minor, c),
                    "minimum_payment": _money(r.minimum_payment_minor, c),
                    "interest_free": bool(r.grace),
                }
                for r in rows
            ]

        return self.db.run(work, readonly=True)

    def payoff_quote(self, ref: str, on: date | None = None, *, owner: str | None = None) -> dict[str, Any]:
        """What settles the account if paid on `on` (default: the business date): everything owed now plus
        the interest and penalty that will accrue for the days before `on`, less any credit held."""

        def work(conn: Connection) -> dict[str, Any]:
            row = conn.execute(sa.select(t.accounts).where(t.accounts.c.ref == ref)).one_or_none()
            if row is None or (owner is not None and row.customer_id != owner):
                raise errors.AccountNotFound(f"no loan or line {ref}", field="account_id")
            bd = self._business_date(conn)
            day = on or bd
            if day < row.opened_on:
                raise errors.DateBeforeDisbursement(
                    f"{day} is before the account opened on {row.opened_on}", field="on"
                )
            if day < bd:
                raise errors.DateBeforeDisbursement(f"{day} is before the business date {bd}", field="on")
            product = self.product(row.product_code)
            interest = penalty = 0
            carry, penalty_carry = row.carry, row.penalty_carry
            cursor = row.accrued_through + timedelta(days=1)
            while row.status == "active" and cursor < day:
                n = day_units(product.day_count, cursor)
                if row.kind == "line":  # as end of day accrues: no interest in grace, none on converted principal
                    base = 0 if row.grace == 1 else row.principal_minor - row.converted_unbilled_minor
                else:
                    base = row.principal_minor
                posted, carry = accrue_day(base * row.accruing, row.rate_micro, n, row.days_per_year, carry)
                interest += posted
                posted, penalty_carry = accrue_day(
                    row.overdue_principal_minor * row.accruing,
                    row.penalty_rate_micro,
                    n,
                    row.days_per_year,
                    penalty_carry,
                )
                penalty += posted
                cursor += timedelta(days=1)
            c = row.currency
            principal = row.principal_minor
            interest_total = row.interest_unbilled_minor + row.interest_billed_minor + interest
            fees = row.fees_minor + row.penalty_minor + penalty
            total = max(0, principal + interest_total + fees - row.credit_minor)
            return {
                "account_id": ref,
                "on": day.isoformat(),
                "principal": _money(principal, c),
                "interest": _money(interest_total, c),
                "fees_and_penalty": _money(fees, c),
                "credit": _money(row.credit_minor, c),
                "total": _money(total, c),
            }

        return self.db.run(work, readonly=True)

    # ------------------------------------------------------------ repayments

    def repay(
        self,
        *,
        member: str,
        key: str,
        account_id: str,
        amount_minor: int,
        source: str = "wallet",
        owner: str | None = None,
    ) -> LendingResult:
        """A repayment from the consumer's wallet or from outside (collected at the custodian bank),
        allocated oldest instalment first, within it in the product's order; the excess per product."""
        amount = positive_amount(amount_minor)
        if source not in ("wallet", "external"):
            raise errors.InvalidRepayment("source must be 'wallet' or 'external'", field="source")
        request = {"account_id": account_id, "amount_minor": amount, "source": source}
        self._prepare_source(account_id)
        work = self._repay_work(account_id, amount, source, key, member, owner)
        return self._idempotent(member, key, "lending.repay", request, work)

    def repay_batch(self, requests: Sequence[Repayment], *, member: str) -> list[LendingResult]:
        """Many repayments at once: one result per request, in order, each the status code and body `repay`
        would have answered had the requests been made one by one in this order — or the error it would have
        raised, as a value (`LendingResult.error`, with its HTTP status and `{"error": {...}}`); a refused
        request stores nothing and never stops the others.

        One transaction for the whole batch (joining the caller's `Database.batch()` when one is open); reads
        and writes are set-based and the ledger entries go to the ledger in one call per segment. Accounts
        end of day has not reached, and prepayments that re-amortise a loan, run through `repay`'s own unit
        of work at their place. At most `REPAY_BATCH_MAX` requests (and no more than the ledger's batch
        bound), else `request.limit_exceeded` for the whole batch. See `lending.repayments`."""
        answers = RepaymentBatch(self, requests, member, self.repay_batch_max).run()
        return [LendingResult(status, body, replayed, error) for status, body, replayed, error in answers]

    @property
    def repay_batch_max(self) -> int:
        """Most requests one `repay_batch` call takes: `REPAY_BATCH_MAX`, or the ledger's batch bound if lower."""
        return min(REPAY_BATCH_MAX, self.ledger.batch_entries_max)

    def _repay_work(
        self, account_id: str, amount: int, source: str, key: str, member: str, owner: str | None
    ) -> Callable[[Connection], tuple[int, dict[str, Any]]]:
        """`repay`'s unit of work (inside its idempotency check), also run by the batch path at a request's
        place when the bulk path does not decide it."""

        def work(conn: Connection) -> tuple[int, dict[str, Any]]:
            row = self._lock_account(conn, account_id, owner)
            if row.status != "active":
                raise errors.AccountNotActive(f"{account_id} is {row.status}; it takes no repayment")
            bd = self._business_date(conn)
            events: list[DomainEvent] = []
            row = self._catch_up(conn, row, bd, events)
            try:
                body = self._apply_repayment(conn, row, amount, bd, source, key, member, events)
            except _InsufficientFunds:
                raise errors.InsufficientFunds("the wallet does not hold enough", field="amount_minor") from None
            flush_events(conn, PLATFORM_CORE, events, self.clock.now())
            return 201, body

        return work

    def _prepare_source(self, account_ref: str) -> None:
        """Open the ledger accounts a money movement needs before its transaction starts. Once every product's
        accounts and its currency's house accounts are open (they stay open), there is nothing to read."""
        products = self.products()
        if all(code in self._gl for code in products) and self._house_currencies >= {
            p.currency for p in products.values()
        }:
            return
        row = self.db.run(
            lambda conn: conn.execute(_ACCOUNT_PRODUCT, {"ref": account_ref}).one_or_none(), readonly=True
        )
        if row is not None:
            self.gl_accounts(row.product_code)
            self.payments.ensure_house_accounts(row.currency)
            self._house_currencies.add(row.currency)

    def _source_account(self, row: Any, source: str) -> int:
        if source == "wallet":
            return self.payments.wallet_ledger_account(row.wallet_id)[0]
        return self.payments.house_account("settlement", row.currency)

    def _source_account_cached(self, row: Any, source: str) -> int:
        """`_source_account`, remembering each wallet's ledger account (it never changes) for the batch path."""
        if source != "wallet":
            return self.payments.house_account("settlement", row.currency)
        cached = self._wallet_accounts.get(row.wallet_id)
        if cached is None:
            cached = self._source_account(row, source)
            if len(self._wallet_accounts) >= WALLET_ACCOUNTS_CACHED_MAX:
                self._wallet_accounts.clear()
            self._wallet_accounts[row.wallet_id] = cached
        return cached

    def _apply_repayment(
        self,
        conn: Connection,
        row: Any,
        amount: int,
        bd: date,
        source: str,
        key: str,
        member: str,
        events: list[DomainEvent],
    ) -> dict[str, Any]:
        product = self.product(row.product_code)
        i = t.instalments.c
        open_rows = conn.execute(_OPEN_INSTALMENTS, {"account": row.id}).all()
        allocation = allocate_repayment(row, open_rows, product, amount, bd)
        values = allocation.values
        if allocation.instalments:
            conn.execute(_PAY_INSTALMENT, allocation.instalments)
        if allocation.reschedules:
            if allocation.unbilled_left == 0:
                conn.execute(sa.delete(t.instalments).where(i.account_id == row.id, i.billed_on.is_(None)))
            else:
                values["instalment_minor"], maturity = self._reschedule(
                    conn, row, product, allocation.unbilled_left, bd
                )
                if maturity is not None:
                    values["maturity_date"] = maturity
        conn.execute(sa.update(t.accounts).where(t.accounts.c.id == row.id).values(**values))
        entry = self._repayment_entry(row, source, amount, allocation, member, key, self._source_account(row, source))
        self._post(conn, entry)
        reference = new_id("rep")
        paid = allocation.paid
        self._transaction(
            conn,
            row.id,
            "repayment",
            bd,
            reference,
            entry.key,
            amount=amount,
            principal=paid["principal"],
            interest=paid["interest"],
            penalty=paid["penalty"],
            fees=paid["fees"],
            credit=paid["credit"],
            details={"source": source, "credit_applied_minor": allocation.credit_applied},
        )
        events.append(self._repayment_event(row, amount, source, allocation, bd))
        account = SimpleNamespace(**{**row._mapping, **values})  # the row as just updated, not read again
        return self._repayment_body(reference, allocation, row.currency, self._account_json(conn, account))

    def _repayment_entry(
        self, row: Any, source: str, amount: int, allocation: Allocation, member: str, key: str, source_account: int
    ) -> PostEntry:
        paid = allocation.paid
        credits_change = paid["credit"] - allocation.credit_applied  # held now less held before and applied
        return PostEntry(
            gl.LEDGER_MEMBER,
            f"lending:{row.ref}:repayment:{member}:{key}",
            gl.postings(
                self.gl_accounts(row.product_code),
                [
                    (source_account, Side.DEBIT, amount),
                    ("loans_receivable", Side.CREDIT, paid["principal"]),
                    ("interest_receivable", Side.CREDIT, paid["interest"]),
                    ("fees_receivable", Side.CREDIT, paid["fees"] + paid["penalty"]),
                    ("customer_credits", Side.CREDIT if credits_change >= 0 else Side.DEBIT, abs(credits_change)),
                ],
            ),
            f"repayment {row.ref}",
        )

    def _repayment_event(self, row: Any, amount: int, source: str, allocation: Allocation, bd: date) -> DomainEvent:
        paid = allocation.paid
        return self._event(
            "repayment_received",
            row.ref,
            bd,
            {
                "customer_id": row.customer_id,
                "amount_minor": amount,
                "currency": row.currency,
                "source": source,
                "closed": allocation.closes,
                # what it paid, for those who share the cash flows (co-lending)
                "principal_minor": paid["principal"],
                "interest_minor": paid["interest"],
                "penalty_minor": paid["penalty"],
                "fees_minor": paid["fees"],
                "credit_minor": paid["credit"],
            },
        )

    @staticmethod
    def _repayment_body(
        reference: str, allocation: Allocation, currency: str, account: dict[str, Any]
    ) -> dict[str, Any]:
        result = {k: _money(v, currency) for k, v in allocation.paid.items()}
        result["credit_applied"] = _money(allocation.credit_applied, currency)
        return {"repayment_id": reference, "allocation": result, "account": account}

    def _reschedule(
        self, conn: Connection, row: Any, product: Product, unbilled_principal: int, bd: date
    ) -> tuple[int, date | None]:
        """After a prepayment: re-amortise the unbilled rows per the product's prepayment mode. Returns the new
        level instalment and the new maturity date (None: unchanged), for the caller's update of the account."""
        i = t.instalments.c
        rows = conn.execute(
            sa.select(t.instalments).where(i.account_id == row.id, i.billed_on.is_(None)).order_by(i.number)
        ).all()
        if not rows:
            return int(row.instalment_minor), None
        new_rows, level = reamortise(
            balance=Money(unbilled_principal, Currency.of(row.currency)),
            carry=Fraction(row.carry, RATE_SCALE * row.days_per_year),
            annual_rate=Decimal(row.rate_micro) / RATE_SCALE,
            day_count=product.day_count,
            method=product.amortisation,
            start=bd,
            due_dates=[(r.due_date, r.due_date) for r in rows],
            first_number=rows[0].number,
            mode=product.prepayment_mode,
            level_minor=int(row.instalment_minor),
        )
        conn.execute(sa.delete(t.instalments).where(i.account_id == row.id, i.billed_on.is_(None)))
        conn.execute(
            t.instalments.insert(),
            [
                {
                    "account_id": row.id,
                    "number": r.number,
                    "kind": "scheduled",
                    "due_date": r.due_date,
                    "principal_due": r.principal.amount_minor,
                    "interest_due": r.interest.amount_minor,
                }
                for r in new_rows
            ],
        )
        return level, new_rows[-1].due_date if new_rows else None

    def _refresh_past_due(self, conn: Connection, account_id: int, bd: date, product: Product) -> None:
        """After a payment: the oldest past-due date and overdue principal as they now stand (days past due
        and bucket are end of day's, as of each day's close)."""
        i = t.instalments.c
        rows = conn.execute(
            sa.select(t.instalments).where(
                i.account_id == account_id, i.billed_on.is_not(None), i.settled_on.is_(None), i.due_date < bd
            )
        ).all()
        past = [
            r.due_date
            for r in rows
            if r.principal_due + r.interest_due + r.fee_due - r.principal_paid - r.interest_paid - r.fee_paid
            > product.dpd_tolerance_minor
        ]
        overdue = sum(r.principal_due - r.principal_paid for r in rows)
        conn.execute(
            sa.update(t.accounts)
            .where(t.accounts.c.id == account_id, t.accounts.c.status == "active")
            .values(past_due_since=min(past) if past else None, overdue_principal_minor=overdue)
        )

    # ------------------------------------------------------------ recoveries

    def recover(
        self, *, member: str, key: str, account_id: str, amount_minor: int, source: str = "external"
    ) -> LendingResult:
        """Money collected on a charged-off account: recoveries income, up to what was charged off."""
        amount = positive_amount(amount_minor)
        if source not in ("wallet", "external"):
            raise errors.InvalidRepayment("source must be 'wallet' or 'external'", field="source")
        self._prepare_source(account_id)
        request = {"account_id": account_id, "amount_minor": amount, "source": source}

        def work(conn: Connection) -> tuple[int, dict[str, Any]]:
            row = self._lock_account(conn, account_id)
            if row.status != "charged_off":
                raise errors.RecoveryNotAllowed(f"{account_id} is {row.status}, not charged off")
            charged = row.charged_off_principal_minor + row.charged_off_interest_minor + row.charged_off_fees_minor
            if row.recovered_minor + amount > charged:
                raise errors.RecoveryNotAllowed(
                    f"recoveries may not exceed the {charged} charged off ({row.recovered_minor} recovered)",
                    field="amount_minor",
                )
            bd = self._business_date(conn)
            ledger_key = f"lending:{row.ref}:recovery:{member}:{key}"
            try:
                self._post(
                    conn,
                    PostEntry(
                        gl.LEDGER_MEMBER,
                        ledger_key,
                        gl.postings(
                            self.gl_accounts(row.product_code),
                            [
                                (self._source_account(row, source), Side.DEBIT, amount),
                                ("recoveries", Side.CREDIT, amount),
                            ],
                        ),
                        f"recovery {row.ref}",
                    ),
                )
            except _InsufficientFunds:
                raise errors.InsufficientFunds("the wallet does not hold enough", field="amount_minor") from None
            conn.execute(
                sa.update(t.accounts)
                .where(t.accounts.c.id == row.id)
                .values(recovered_minor=row.recovered_minor + amount, version=row.version + 1)
            )
            self._transaction(
                conn, row.id, "recovery", bd, new_id("rec"), ledger_key, amount=amount, details={"source": source}
            )
            flush_events(
                conn,
                PLATFORM_CORE,
                [
                    self._event(
                        "recovered",
                        row.ref,
                        bd,
                        {"customer_id": row.customer_id, "amount_minor": amount, "currency": row.currency},
                    )
                ],
                self.clock.now(),
            )
            account = conn.execute(sa.select(t.accounts).where(t.accounts.c.id == row.id)).one()
            return 201, self._account_json(conn, account, with_rows=False)

        return self._idempotent(member, key, "lending.recover", request, work)

    # ------------------------------------------------------------ credit lines: conversion

    def convert_statement(
        self, *, member: str, key: str, account_id: str, term_months: int, owner: str | None = None
    ) -> LendingResult:
        """Convert the open statement's principal into 3/6/12 monthly instalments, due on the next statement
        due dates, each with the product's conversion fee. Stays within the limit; the fee is shown as an APR."""
        request = {"account_id": account_id, "term_months": term_months}
        self._prepare_source(account_id)

        def work(conn: Connection) -> tuple[int, dict[str, Any]]:
            row = self._lock_account(conn, account_id, owner)
            if row.kind != "line":
                raise errors.NotConvertible("only a credit line's statement converts", field="account_id")
            if row.status != "active":
                raise errors.AccountNotActive(f"{account_id} is {row.status}")
            product = self.product(row.product_code)
            if term_months not in product.conversion_terms:
                raise errors.NotConvertible(f"terms offered: {list(product.conversion_terms)}", field="term_months")
            bd = self._business_date(conn)
            events: list[DomainEvent] = []
            row = self._catch_up(conn, row, bd, events)
            if row.stmt_date is None or row.stmt_converted or bd > row.stmt_due_date:
                raise errors.NotConvertible("no open statement to convert")
            i = t.instalments.c
            statement_row = conn.execute(
                sa.select(t.instalments).where(
                    i.account_id == row.id, i.kind == "statement", i.billed_on == row.stmt_date
                )
            ).one_or_none()
            unbill = 0
            if statement_row is not None and statement_row.settled_on is None:
                unbill = statement_row.principal_due - statement_row.principal_paid
            # principal still billed on older rows (a past-due minimum) is owed with them and does not convert
            convertible = row.principal_minor - row.converted_unbilled_minor - (row.principal_billed_minor - unbill)
            amount = min(row.stmt_principal_minor, convertible)
            if amount <= 0:
                raise errors.NotConvertible("the statement has no principal to convert")
            if statement_row is not None and unbill:
                conn.execute(
                    sa.update(t.instalments)
                    .where(i.account_id == row.id, i.number == statement_row.number)
                    .values(principal_due=statement_row.principal_paid)
                )
            next_number = (
                int(conn.execute(sa.select(sa.func.max(i.number)).where(i.account_id == row.id)).scalar_one() or 0) + 1
            )
            parts = allocate(amount, [1] * term_months)
            fee = (amount * product.conversion_fee_bps_per_month + 5_000) // 10_000
            due_dates = []
            statement = row.stmt_date
            for k in range(1, term_months + 1):
                statement_k = add_months(statement, k, row.statement_day)
                due_dates.append(product.calendar.roll(statement_k + timedelta(days=product.due_days), product.roll))
            conn.execute(
                t.instalments.insert(),
                [
                    {
                        "account_id": row.id,
                        "number": next_number + k,
                        "kind": "conversion",
                        "due_date": due_dates[k],
                        "principal_due": parts[k],
                        "fee_due": fee,
                    }
                    for k in range(term_months)
                ],
            )
            conn.execute(
                sa.update(t.accounts)
                .where(t.accounts.c.id == row.id)
                .values(
                    principal_billed_minor=row.principal_billed_minor - unbill,
                    converted_unbilled_minor=row.converted_unbilled_minor + amount,
                    stmt_converted=1,
                    stmt_balance_minor=row.stmt_balance_minor - amount,
                    version=row.version + 1,
                )
            )
            apr = compute_apr([(bd, amount)], [(d, p + fee) for d, p in zip(due_dates, parts, strict=True)])
            self._transaction(
                conn,
                row.id,
                "conversion",
                bd,
                new_id("cnv"),
                None,
                amount=amount,
                principal=amount,
                fees=fee * term_months,
                details={"term_months": term_months, "apr": f"{apr.apr:.2f}"},
            )
            self._refresh_past_due(conn, row.id, bd, product)
            flush_events(conn, PLATFORM_CORE, events, self.clock.now())
            account = conn.execute(sa.select(t.accounts).where(t.accounts.c.id == row.id)).one()
            return 201, {
                "converted": _money(amount, row.currency),
                "term_months": term_months,
                "fee_per_instalment": _money(fee, row.currency),
                "apr": f"{apr.apr:.2f}",
                "due_dates": [d.isoformat() for d in due_dates],
                "account": self._account_json(conn, account),
            }

        return self._idempotent(member, key, "lending.convert", request, work)

    # ------------------------------------------------------------ credit lines: the funding source

    def reserve_draw(
        self, conn: Connection, *, customer_id: str, amount_minor: int, currency: str, payment_id: str
    ) -> FundingLeg:
        query = _LINE_OF_CUSTOMER_LOCKED if self.db.is_postgres else _LINE_OF_CUSTOMER
        row = conn.execute(query, {"customer": customer_id, "currency": currency}).one_or_none()
        if row is None:
            raise errors.AccountNotFound("the customer has no open credit line in this currency", field="funding")
        bd = self._business_date(conn)
        events: list[DomainEvent] = []
        row = self._catch_up(conn, row, bd, events)
        gla = self.gl_accounts(row.product_code)
        owed = (
            row.principal_minor
            + row.interest_unbilled_minor
            + row.interest_billed_minor
            + row.fees_minor
            + row.penalty_minor
        )
        # a credit held (a refund or payment beyond what was owed) pays for the draw first; the rest is principal
        from_credit = min(row.credit_minor, amount_minor)
        to_principal = amount_minor - from_credit
        available = max(0, row.limit_minor - owed + row.credit_minor)
        if to_principal and amount_minor > available:
            raise errors.LineLimitExceeded(
                f"the draw of {amount_minor} exceeds the available {available}",
                field="amount_minor",
                available_minor=available,
            )
        conn.execute(
            _DRAW_ON_LINE,
            {
                "account": row.id,
                "credit": row.credit_minor - from_credit,
                "principal": row.principal_minor + to_principal,
                "new_version": row.version + 1,
            },
        )
        if not to_principal:
            leg = FundingLeg(gla["customer_credits"], row.ref)
        else:
            leg = FundingLeg(gla["loans_receivable"], row.ref)
            if from_credit:  # payments debits one account with the whole draw: the credit's part comes back
                self._post(
                    conn,
                    PostEntry(
                        gl.LEDGER_MEMBER,
                        f"lending:{row.ref}:draw:{payment_id}:credit",
                        gl.postings(
                            gla,
                            [
                                ("customer_credits", Side.DEBIT, from_credit),
                                ("loans_receivable", Side.CREDIT, from_credit),
                            ],
                        ),
                        f"draw {payment_id} on {row.ref} paid from the credit held first",
                    ),
                )
        conn.execute(
            _INSERT_DRAW,
            {"payment_id": payment_id, "account_id": row.id, "amount_minor": amount_minor, "business_date": bd},
        )
        self._transaction(
            conn,
            row.id,
            "draw",
            bd,
            payment_id,
            f"payments:{payment_id}",
            amount=amount_minor,
            principal=to_principal,
            credit=from_credit,
        )
        events.append(
            self._event(
                "line_drawn",
                row.ref,
                bd,
                {
                    "customer_id": customer_id,
                    "amount_minor": amount_minor,
                    "principal_minor": to_principal,
                    "currency": currency,
                    "payment_id": payment_id,
                },
            )
        )
        # payments writes these with its own events, after its ledger entry (one lock order for everyone)
        return FundingLeg(leg.ledger_account_id, leg.source_reference, tuple(events))

    def refund_draw(self, conn: Connection, *, payment_id: str, amount_minor: int, currency: str) -> FundingLeg:
        d = t.draws.c
        draw = conn.execute(sa.select(t.draws).where(d.payment_id == payment_id)).one_or_none()
        if draw is None:
            raise errors.AccountNotFound(f"payment {payment_id} was not drawn on a line", field="payment_id")
        account = conn.execute(sa.select(t.accounts.c.ref).where(t.accounts.c.id == draw.account_id)).scalar_one()
        row = self._lock_account(conn, account)
        bd = self._business_date(conn)
        events: list[DomainEvent] = []
        row = self._catch_up(conn, row, bd, events)
        gla = self.gl_accounts(row.product_code)
        i = t.instalments.c
        principal = 0
        to_rows: list[tuple[Any, int]] = []
        if row.status == "active":
            # the refund reduces the principal not yet billed, then the principal billed on open rows (oldest
            # first, as a repayment would); only what exceeds the principal owed is held as a credit
            revolving_unbilled = row.principal_minor - row.principal_billed_minor - row.converted_unbilled_minor
            principal = min(amount_minor, revolving_unbilled)
            open_rows = conn.execute(
                sa.select(t.instalments)
                .where(i.account_id == row.id, i.billed_on.is_not(None), i.settled_on.is_(None))
                .order_by(i.due_date, i.number)
            ).all()
            for inst in open_rows:
                take = min(amount_minor - principal, inst.principal_due - inst.principal_paid)
                if take > 0:
                    to_rows.append((inst, take))
                    principal += take
        credit = amount_minor - principal
        for inst, take in to_rows:
            settled = (
                inst.principal_paid + take == inst.principal_due
                and inst.interest_paid == inst.interest_due
                and inst.fee_paid == inst.fee_due
            )
            conn.execute(
                sa.update(t.instalments)
                .where(i.account_id == row.id, i.number == inst.number)
                .values(principal_paid=inst.principal_paid + take, settled_on=bd if settled else None)
            )
        values: dict[str, Any] = {
            "principal_minor": row.principal_minor - principal,
            "principal_billed_minor": row.principal_billed_minor - sum(take for _, take in to_rows),
            "credit_minor": row.credit_minor + credit,
        }
        if (
            principal and row.stmt_date is not None and draw.business_date <= row.stmt_date and bd <= row.stmt_due_date
        ):  # a refund of a purchase on the open statement pays towards that statement, as a repayment does
            values["stmt_paid_minor"] = row.stmt_paid_minor + principal
        if principal:
            leg = FundingLeg(gla["loans_receivable"], row.ref)
            if credit:  # payments credits one account with the whole refund: move the excess to the credits
                self._post(
                    conn,
                    PostEntry(
                        gl.LEDGER_MEMBER,
                        f"lending:{row.ref}:refund:{payment_id}:{draw.refunded_minor}",
                        gl.postings(
                            gla, [("loans_receivable", Side.DEBIT, credit), ("customer_credits", Side.CREDIT, credit)]
                        ),
                        f"refund of {payment_id} beyond the principal of {row.ref}, held as a credit",
                    ),
                )
        else:  # nothing owed as principal (or the line is closed): held as a credit for the consumer
            leg = FundingLeg(gla["customer_credits"], row.ref)
        conn.execute(sa.update(t.accounts).where(t.accounts.c.id == row.id).values(**values, version=row.version + 1))
        if to_rows:
            self._refresh_past_due(conn, row.id, bd, self.product(row.product_code))
        conn.execute(
            sa.update(t.draws)
            .where(d.payment_id == payment_id)
            .values(refunded_minor=draw.refunded_minor + amount_minor)
        )
        self._transaction(
            conn,
            row.id,
            "refund",
            bd,
            f"{payment_id}:{draw.refunded_minor}",
            None,
            amount=amount_minor,
            principal=principal,
            credit=credit,
        )
        refunded = self._event(
            "line_refunded",
            row.ref,
            bd,
            {
                "payment_id": payment_id,
                "amount_minor": amount_minor,
                "principal_minor": principal,
                "currency": row.currency,
            },
        )
        return FundingLeg(leg.ledger_account_id, leg.source_reference, (refunded,))

    # ------------------------------------------------------------ reconcile

    def reconcile(self) -> dict[str, Any]:
        """Subledger against ledger, per product and general-ledger account, to the unit.

        The subledger side sums the account rows (and, for income, their lifetime totals); end-of-day
        totals not yet posted are added to the ledger side, so reconcile holds between steps too. Run it on
        a quiet book (after end of day): online activity between the reads shows as a transient difference."""
        report: dict[str, Any] = {"products": [], "clean": True}
        for code, product in sorted(self.products().items()):
            gla = self.gl_accounts(code)
            expected, pending = self.db.run(partial(_subledger_totals, product_code=code), readonly=True)
            lines = []
            for purpose in gl.CHART:
                ledger_balance = self.ledger.get_account(gla[purpose]).balance_minor
                difference = ledger_balance + pending.get(purpose, 0) - expected[purpose]
                lines.append(
                    {
                        "gl_account": gl.account_code(code, purpose),
                        "subledger_minor": expected[purpose],
                        "ledger_minor": ledger_balance,
                        "pending_eod_minor": pending.get(purpose, 0),
                        "difference_minor": difference,
                    }
                )
                if difference:
                    report["clean"] = False
            report["products"].append({"product_code": code, "currency": product.currency, "accounts": lines})
        return report

    # ------------------------------------------------------------ portfolio aggregates (the web console's reads)
    # Set-based reads over the whole book: one GROUP BY each, so a page over a 100,000-account book reads a
    # few hundred rows, never every account. The portfolio arithmetic on them stays in `analytics`.

    def originations_by_month(self) -> list[dict[str, Any]]:
        """Accounts opened per calendar month and product: how many, and the principal lent (loans) or the
        limit granted (lines), in minor units of the product's currency. Oldest month first."""
        a = t.accounts.c
        year, month = sa.extract("year", a.opened_on), sa.extract("month", a.opened_on)
        amount = sa.case((a.kind == "line", a.limit_minor), else_=a.original_principal_minor)
        query = (
            sa.select(year, month, a.product_code, a.kind, a.currency, sa.func.count(), sa.func.sum(amount))
            .group_by(year, month, a.product_code, a.kind, a.currency)
            .order_by(year, month, a.product_code)
        )
        rows = self.db.run(lambda conn: conn.execute(query).all(), readonly=True)
        return [
            {
                "month": f"{int(y):04d}-{int(m):02d}",
                "product_code": product_code,
                "kind": kind,
                "currency": currency,
                "accounts": int(count),
                "amount_minor": int(total or 0),
            }
            for y, m, product_code, kind, currency, count, total in rows
        ]

    def balances_by_product(self) -> list[dict[str, Any]]:
        """Accounts per product and status now: how many, outstanding principal, and everything owed
        (principal, interest, fees, penalty), in minor units."""
        a = t.accounts.c
        owed = a.principal_minor + a.interest_unbilled_minor + a.interest_billed_minor + a.fees_minor + a.penalty_minor
        query = (
            sa.select(
                a.product_code,
                a.kind,
                a.currency,
                a.status,
                sa.func.count(),
                sa.func.sum(a.principal_minor),
                sa.func.sum(owed),
                sa.func.sum(sa.case((a.dpd > 0, 1), else_=0)),
            )
            .group_by(a.product_code, a.kind, a.currency, a.status)
            .order_by(a.product_code, a.status)
        )
        rows = self.db.run(lambda conn: conn.execute(query).all(), readonly=True)
        return [
            {
                "product_code": product_code,
                "kind": kind,
                "currency": currency,
                "status": status,
                "accounts": int(count),
                "principal_minor": int(principal or 0),
                "balance_minor": int(balance or 0),
                "past_due_accounts": int(past_due or 0),
            }
            for product_code, kind, currency, status, count, principal, balance, past_due in rows
        ]

    def snapshot_state(self) -> tuple[date | None, int]:
        """The latest month end with snapshots and how many it has. End of day only ever adds snapshots, to
        the month it closes, so this changes whenever they change: a cache key for reports built on them."""
        m = t.snapshots.c

        def work(conn: Connection) -> tuple[date | None, int]:
            latest = conn.execute(sa.select(sa.func.max(m.month_end))).scalar_one_or_none()
            if latest is None:
                return None, 0
            return latest, int(conn.execute(sa.select(sa.func.count()).where(m.month_end == latest)).scalar_one())

        return self.db.run(work, readonly=True)

    def snapshot_buckets(self, account_refs: Sequence[str], month_end: date | None = None) -> list[dict[str, Any]]:
        """`account_months` cut to what a partner's portfolio needs — month end, account id, bucket — and found
        through the accounts' ref index (one index probe per account, however large the month's snapshot)."""
        m, a = t.snapshots.c, t.accounts.c

        def work(conn: Connection) -> list[dict[str, Any]]:
            month = month_end or conn.execute(sa.select(sa.func.max(m.month_end))).scalar_one_or_none()
            if month is None:
                return []
            out: list[dict[str, Any]] = []
            refs = list(account_refs)
            for start in range(0, len(refs), 1_000):
                rows = conn.execute(
                    sa.select(a.ref, m.bucket)
                    .select_from(t.accounts.join(t.snapshots, m.account_id == a.id))
                    .where(a.ref.in_(refs[start : start + 1_000]), m.month_end == month)
                ).all()
                out += [{"month_end": _iso(month), "account_id": ref, "bucket": int(bucket)} for ref, bucket in rows]
            return out

        return self.db.run(work, readonly=True)

    def snapshot_month_ends(self) -> list[date]:
        """The month ends that have account-month snapshots, oldest first."""
        m = t.snapshots.c
        return self.db.run(
            lambda conn: list(conn.execute(sa.select(m.month_end).distinct().order_by(m.month_end)).scalars()),
            readonly=True,
        )

    @staticmethod
    def _dpd_band(dpd: Any, boundaries: Sequence[int]) -> Any:
        """SQL: the position of `dpd` among increasing lower bounds (0 below the first)."""
        whens = [(dpd >= bound, index) for index, bound in reversed(list(enumerate(boundaries, start=1)))]
        return sa.case(*whens, else_=0)

    def snapshot_bands(self, boundaries: Sequence[int]) -> list[dict[str, Any]]:
        """Per month end, currency, status and DPD band (`band` = the number of `boundaries` at or below the
        account's days past due): accounts, balance owed and principal, from the account-month snapshots."""
        m = t.snapshots.c
        band = self._dpd_band(m.dpd, boundaries)
        query = (
            sa.select(
                m.month_end,
                m.currency,
                m.status,
                band,
                sa.func.count(),
                sa.func.sum(m.balance_minor),
                sa.func.sum(m.principal_minor),
            )
            .group_by(m.month_end, m.currency, m.status, band)
            .order_by(m.month_end, m.currency, m.status, band)
        )
        rows = self.db.run(lambda conn: conn.execute(query).all(), readonly=True)
        return [
            {
                "month_end": month_end,
                "currency": currency,
                "status": status,
                "band": int(band_index),
                "accounts": int(count),
                "balance_minor": int(balance or 0),
                "principal_minor": int(principal or 0),
            }
            for month_end, currency, status, band_index, count, balance, principal in rows
        ]

    def snapshot_transitions(
        self, from_month_end: date, to_month_end: date, boundaries: Sequence[int]
    ) -> list[dict[str, Any]]:
        """Roll-rate counts: the accounts of the `from_month_end` snapshot grouped by their (status, DPD band)
        then and at `to_month_end` (`to_status` None: no snapshot then), with their balances at both."""
        before, after = t.snapshots.alias("before"), t.snapshots.alias("after")
        b, f = before.c, after.c
        from_band, to_band = self._dpd_band(b.dpd, boundaries), self._dpd_band(f.dpd, boundaries)
        query = (
            sa.select(
                b.status,
                from_band,
                f.status,
                to_band,
                sa.func.count(),
                sa.func.sum(b.balance_minor),
                sa.func.sum(sa.func.coalesce(f.balance_minor, 0)),
            )
            .select_from(before.outerjoin(after, sa.and_(f.month_end == to_month_end, f.account_id == b.account_id)))
            .where(b.month_end == from_month_end)
            .group_by(b.status, from_band, f.status, to_band)
        )
        rows = self.db.run(lambda conn: conn.execute(query).all(), readonly=True)
        return [
            {
                "from_status": from_status,
                "from_band": int(from_index),
                "to_status": to_status,
                "to_band": int(to_index or 0),
                "accounts": int(count),
                "from_balance_minor": int(from_balance or 0),
                "to_balance_minor": int(to_balance or 0),
            }
            for from_status, from_index, to_status, to_index, count, from_balance, to_balance in rows
        ]

    def vintage_counts(self, dpd_min: int | None) -> list[dict[str, Any]]:
        """Vintage input from the account-month snapshots: per origination month and the month end at which
        an account first went bad (days past due ≥ `dpd_min`, or charged off; `dpd_min` None: charged off
        only; None: never), the accounts, their original principal and the first and last month ends seen."""
        m = t.snapshots.c
        bad = m.status == "charged_off" if dpd_min is None else sa.or_(m.status == "charged_off", m.dpd >= dpd_min)
        per_account = (
            sa.select(
                sa.func.min(m.opened_on).label("opened_on"),
                sa.func.max(m.original_principal_minor).label("principal"),
                sa.func.min(sa.case((bad, m.month_end))).label("first_bad"),
                sa.func.min(m.month_end).label("first_seen"),
                sa.func.max(m.month_end).label("last_seen"),
            )
            .group_by(m.account_id)
            .subquery()
        )
        p = per_account.c
        year, month = sa.extract("year", p.opened_on), sa.extract("month", p.opened_on)
        query = (
            sa.select(
                year,
                month,
                p.first_bad,
                sa.func.count(),
                sa.func.sum(p.principal),
                sa.func.min(p.first_seen),
                sa.func.max(p.last_seen),
            )
            .group_by(year, month, p.first_bad)
            .order_by(year, month, p.first_bad)
        )
        rows = self.db.run(lambda conn: conn.execute(query).all(), readonly=True)
        return [
            {
                "origination_month": f"{int(y):04d}-{int(mo):02d}",
                "first_bad_month_end": first_bad,
                "accounts": int(count),
                "original_principal_minor": int(principal or 0),
                "first_month_end": first_seen,
                "last_month_end": last_seen,
            }
            for y, mo, first_bad, count, principal, first_seen, last_seen in rows
        ]

    # ------------------------------------------------------------ decision scores (the web console's scoring page)
    # Set-based reads over the stored decisions. The score, its model and the feature vector live in each
    # application's JSON `decision` (`decision.score.score`, `.model`, `.features.values`); SQLAlchemy's JSON
    # paths read them on both databases (SQLite `json_extract`, PostgreSQL `#>>` on the JSONB column), so one
    # GROUP BY serves every month however many applications there are.

    def decision_scores(
        self,
        since: date | None = None,
        *,
        before: date | None = None,
        band_width: int = DECISION_SCORE_BAND_WIDTH,
    ) -> list[dict[str, Any]]:
        """Decisions per application month (of the business date applied on), scoring model, score band and
        outcome: `band` is the band's lowest score (`score // band_width * band_width`; `band_width=1` keeps
        every score apart), `outcome` approved (accepted ones included) or declined, `decisions` how many.
        Applications on or after `since` and before `before`; oldest month first, then model, band, outcome."""
        if type(band_width) is not int or band_width < 1:
            raise ValueError("band_width is a positive whole number of points")
        a = t.applications.c
        score = a.decision[("score", "score")].as_integer()
        # One row per decision with its grouping keys, each JSON path read once, grouped outside by the plain
        # columns. SQLite materialises it: grouping on the JSON paths themselves reads each decision's JSON
        # again per grouping expression (measured: twice as slow on 100,000 decisions).
        per_decision = sa.select(
            sa.extract("year", a.business_date).label("year"),
            sa.extract("month", a.business_date).label("month"),
            a.decision[("score", "model")].as_string().label("model"),
            (score // band_width * band_width if band_width > 1 else score).label("band"),
            sa.case((a.status == "declined", "declined"), else_="approved").label("outcome"),
        )
        if since is not None:
            per_decision = per_decision.where(a.business_date >= since)
        if before is not None:
            per_decision = per_decision.where(a.business_date < before)
        d = per_decision.cte("decision_scores").prefix_with("MATERIALIZED", dialect="sqlite").c
        keys = (d.year, d.month, d.model, d.band, d.outcome)
        query = sa.select(*keys, sa.func.count()).where(d.band.is_not(None)).group_by(*keys).order_by(*keys)
        rows = self.db.run(lambda conn: conn.execute(query).all(), readonly=True)
        return [
            {
                "month": f"{int(y):04d}-{int(m):02d}",
                "model": model_id,
                "band": int(lowest),
                "outcome": result,
                "decisions": int(count),
            }
            for y, m, model_id, lowest, result, count in rows
        ]

    def decision_features(self, month: str, model: str, *, limit: int = DECISION_FEATURES_MAX) -> list[dict[str, Any]]:
        """The feature vectors stored with the decisions of application month `month` (`YYYY-MM`) that `model`
        scored: at most `limit` of them, streamed from the database a page at a time (memory stays bounded
        by `limit`, not by the month). Each is the vector's `values` (feature name → number or None)."""
        if type(limit) is not int or not 0 < limit <= DECISION_FEATURES_MAX:
            raise ValueError(f"limit is 1–{DECISION_FEATURES_MAX}")
        first = date.fromisoformat(f"{month}-01")
        after = add_months(first, 1)
        a = t.applications.c
        query = (
            sa.select(a.decision[("score", "features", "values")])
            .where(
                a.business_date >= first,
                a.business_date < after,
                a.decision[("score", "model")].as_string() == model,
            )
            .limit(limit)
        )

        def work(conn: Connection) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            result = conn.execution_options(yield_per=DECISION_FEATURES_PAGE).execute(query)
            for page in result.partitions():
                out += [dict(values) for (values,) in page if isinstance(values, dict)]
            return out

        return self.db.run(work, readonly=True)


def _subledger_totals(conn: Connection, product_code: str) -> tuple[dict[str, int], dict[str, int]]:
    """What the subledger says each general-ledger account of a product holds, and the end-of-day totals
    not yet posted (as their effect on each account)."""
    a = t.accounts.c

    def total(expression: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(expression), 0)

    s = conn.execute(
        sa.select(
            total(a.principal_minor),
            total(a.interest_unbilled_minor + a.interest_billed_minor),
            total(a.fees_minor + a.penalty_minor),
            total(a.credit_minor),
            total(a.interest_accrued_minor),
            total(a.penalty_accrued_minor),
            total(a.fees_charged_minor + a.origination_fee_minor),
            total(a.recovered_minor),
            total(a.charged_off_principal_minor + a.charged_off_interest_minor + a.charged_off_fees_minor),
        ).where(a.product_code == product_code)
    ).one()
    purposes = (
        "loans_receivable",
        "interest_receivable",
        "fees_receivable",
        "customer_credits",
        "interest_income",
        "penalty_income",
        "fee_income",
        "recoveries",
        "credit_losses",
    )
    expected = {purpose: int(value) for purpose, value in zip(purposes, s, strict=True)}
    expected["allowance"] = 0  # provided for at charge-off and used at once (no ECL provisioning here)
    g = t.gl_pending.c
    rows = conn.execute(
        sa.select(g.movement, sa.func.sum(g.amount_minor))
        .where(g.product_code == product_code, g.posted == 0)
        .group_by(g.movement)
    ).all()
    return expected, gl.movement_effects({movement: int(amount) for movement, amount in rows})


class _InsufficientFunds(Exception):
    """The ledger found the paying wallet short (turned into `lending.insufficient_funds`)."""


class LineFunding:
    """Payments' `FundingSource` port, implemented by lending: paying a merchant with the credit line."""

    def __init__(self, lending: LendingService) -> None:
        self.lending = lending
        self.name = LINE_FUNDING

    def reserve(
        self, transaction: Any, *, customer_id: str, amount_minor: int, currency: str, payment_id: str
    ) -> FundingLeg:
        return self.lending.reserve_draw(
            transaction, customer_id=customer_id, amount_minor=amount_minor, currency=currency, payment_id=payment_id
        )

    def refunded(self, transaction: Any, *, payment_id: str, amount_minor: int, currency: str) -> FundingLeg:
        return self.lending.refund_draw(
            transaction, payment_id=payment_id, amount_minor=amount_minor, currency=currency
        )

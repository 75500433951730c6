"""Co-lending: partner banks, the funding split of each loan, the sharing of its cash flows, daily settlement.

* `ColendingService.allocator` is lending's `FundingAllocator`: inside the acceptance's transaction it locks
  the eligible partners (in id order), computes each one's capacity from its agreement and the regulatory
  limits in force, splits the loan (`allocation.split_funding`), checks the split against the rules (the
  platform's minimum share, each bank's limits after the participation) and writes the participations.
* `process_events` follows lending's outbox (consumer `colending`): each funding, repayment, refund onto a
  line, charge-off and recovery is shared among the account's participants by the cumulative
  largest-remainder split, per component, and written as per-partner movements; the consumer's position
  advances in the same transaction (at-least-once delivery, applied exactly once).
* `settle(business_date)` nets, per partner, every unsettled movement up to the date into one ledger entry
  and one payment through the bank rail (either direction), and keeps the statement.

Sign convention of a movement: positive = the platform owes the bank (its part of collections), negative
= the bank owes the platform (its part of a funding). Losses carry no cash: they reduce the bank's
participation and show on its statement.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.colending import tables as t
from creditstack.colending.allocation import (
    PLATFORM,
    BankCapacity,
    FundingNotPossible,
    cumulative_split,
    interest_weights,
    share_ceil,
    share_floor,
    split_funding,
)
from creditstack.core import business_date as business_dates
from creditstack.core import events as outbox
from creditstack.core.clock import Clock
from creditstack.core.db import Database
from creditstack.core.errors import BusinessRuleViolated, CreditstackError, NotFound, ValidationFailed
from creditstack.core.ids import new_id
from creditstack.core.money import Currency, Money
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.domain import PostEntry, PostingSpec, Side
from creditstack.ledger.service import SERVICE, LedgerService
from creditstack.lending.ports import FundingRequest, FundingShare
from creditstack.payments.domain import RailInstruction, RailOutcome
from creditstack.payments.service import PaymentsService
from creditstack.policy.domain import LoanSplit, PartnerBankPosition
from creditstack.policy.evaluate import (
    check_colending_split,
    check_partner_limits,
    failures,
    in_force,
    platform_share_min,
)

CONSUMER = "colending"
LEDGER_MEMBER = "colending"
#: Components with cash; "loss" has none.
CASH_COMPONENTS = ("funding", "principal", "interest", "fees", "penalty", "recovery")
COMPONENTS = (*CASH_COMPONENTS, "loss")
#: The components that lower a participant's principal, shared as one running total.
PRINCIPAL_REDUCTIONS = ("principal", "loss")
EVENTS_PAGE = 5_000
#: The events whose cash flows (or losses) are shared with the partners; the consumer reads no others.
SHARED_TOPICS = (
    "lending.charged_off",
    "lending.line_drawn",
    "lending.line_refunded",
    "lending.loan_disbursed",
    "lending.recovered",
    "lending.repayment_received",
)
PLATFORM_SHARE_MAX_BPS_DEFAULT = 10_000


# Statements built once (building one costs more than running these small ones).
_p, _m, _s = t.partners.c, t.movements.c, t.settlements.c
_DAY = sa.bindparam("day", type_=sa.Date)
_PARTNER = sa.bindparam("partner", type_=sa.String)
_CONSUMER_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))")
_OUTBOX_LAST = sa.select(sa.func.max(PLATFORM_CORE.outbox.c.position))
#: Every partner (in id order) with whether it is settled for the day and whether it has movements to settle.
_SETTLEMENT_CANDIDATES = sa.select(
    _p.id,
    _p.currency,
    _p.bank_account_token,
    sa.exists().where(_s.partner_id == _p.id, _s.business_date == _DAY).label("settled"),
    sa.exists().where(_m.partner_id == _p.id, _m.settlement_id.is_(None), _m.business_date <= _DAY).label("pending"),
).order_by(_p.id)
_SETTLEMENT_EXISTS = sa.select(_s.id).where(_s.partner_id == _PARTNER, _s.business_date == _DAY)
_SETTLEMENT_ROW = sa.select(t.settlements).where(_s.partner_id == _PARTNER, _s.business_date == _DAY)
_SETTLEMENT_ACCOUNTS = (
    sa.select(_m.account_ref, _m.component, sa.func.sum(_m.amount_minor))
    .where(_m.settlement_id == sa.bindparam("settlement"))
    .group_by(_m.account_ref, _m.component)
    .order_by(_m.account_ref, _m.component)
)
_MARK_MOVEMENTS = (
    sa.update(t.movements)
    .where(_m.partner_id == _PARTNER, _m.settlement_id.is_(None), _m.business_date <= _DAY)
    .values(settlement_id=sa.bindparam("settlement"))
    .returning(_m.component, _m.amount_minor)
)
_UNMARK_MOVEMENTS = (
    sa.update(t.movements).where(_m.settlement_id == sa.bindparam("settlement")).values(settlement_id=None)
)
_PARTNER_OUTSTANDING = (
    sa.update(t.partners)
    .where(_p.id == _PARTNER)
    .values(outstanding_minor=_p.outstanding_minor + sa.bindparam("delta", type_=sa.BigInteger))
)
_SETTLEMENT_STATUS = (
    sa.update(t.settlements).where(_s.id == sa.bindparam("settlement")).values(status=sa.bindparam("outcome"))
)
#: Settlements whose payment the rail has not answered yet (sent again by `settle`), oldest first.
_UNANSWERED = (
    sa.select(_s.id, _s.end_to_end_id, _s.net_minor, _s.currency, _p.bank_account_token)
    .join(t.partners, _p.id == _s.partner_id)
    .where(_s.status == "submitted", _s.net_minor != 0, _s.business_date <= sa.bindparam("day"))
    .order_by(_s.business_date, _s.partner_id)
)


class PartnerNotFound(NotFound):
    """No partner bank with this id (or not the caller's)."""

    code = "colending.partner_not_found"


class InvalidAgreement(ValidationFailed):
    """A partner's agreement terms are out of range."""

    code = "colending.invalid_agreement"


class SettlementExists(BusinessRuleViolated):
    """Every partner's settlement for this business date is already made."""

    code = "colending.settlement_exists"


class SettlementDateInvalid(ValidationFailed):
    """A settlement is for the current business date or an earlier one, never a future date."""

    code = "colending.settlement_date_invalid"


class StatementNotFound(NotFound):
    """No settlement statement for this partner and date."""

    code = "colending.statement_not_found"


class PartnerTaken(BusinessRuleViolated):
    """A partner with this id, or for this API member, is registered already."""

    code = "colending.partner_taken"


@dataclass(frozen=True, slots=True)
class Agreement:
    products: tuple[str, ...]
    share_min_bps: int
    share_max_bps: int
    exposure_cap_minor: int
    score_floor: int
    term_months_max: int
    bank_rate: Decimal  # annual, six places at most
    fees_to: str = "pro_rata"  # "platform" | "pro_rata"
    penalty_to: str = "platform"

    def check(self) -> None:
        if not 0 <= self.share_min_bps <= self.share_max_bps <= 10_000:
            raise InvalidAgreement("0 <= share_min_bps <= share_max_bps <= 10,000", field="share_max_bps")
        if self.exposure_cap_minor < 0 or self.term_months_max < 0:
            raise InvalidAgreement("caps must not be negative", field="exposure_cap_minor")
        if self.fees_to not in ("platform", "pro_rata") or self.penalty_to not in ("platform", "pro_rata"):
            raise InvalidAgreement("fees_to and penalty_to are 'platform' or 'pro_rata'", field="fees_to")
        scaled = self.bank_rate * 1_000_000
        if not 0 <= self.bank_rate <= 10 or scaled != scaled.to_integral_value():
            raise InvalidAgreement("bank_rate is a fraction from 0 to 10 with six places at most", field="bank_rate")
        if self.term_months_max > 480:
            raise InvalidAgreement("term_months_max is at most 480", field="term_months_max")
        if not 0 <= self.score_floor <= 1_000:
            raise InvalidAgreement("score_floor lies within 0–1,000", field="score_floor")
        if self.exposure_cap_minor > 10**17:
            raise InvalidAgreement("exposure_cap_minor is at most 10^17", field="exposure_cap_minor")


class ColendingService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        payments: PaymentsService,
        *,
        rule_sets: str,
        platform_share_max_bps: int = PLATFORM_SHARE_MAX_BPS_DEFAULT,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.payments = payments
        self.rule_sets = rule_sets
        self.platform_share_max_bps = platform_share_max_bps
        self._ledger_accounts: dict[str, int] = {}
        self.allocator = ColendingAllocator(self)

    # ------------------------------------------------------------ partners

    def register_partner(
        self,
        *,
        name: str,
        member: str,
        currency: str,
        net_tier1_capital_minor: int,
        total_loans_minor: int,
        agreement: Agreement,
        joint_loans_elsewhere_minor: int = 0,
        bank_account_token: str = "",
        partner_id: str | None = None,
    ) -> dict[str, Any]:
        agreement.check()
        Currency.of(currency)
        if net_tier1_capital_minor < 0 or total_loans_minor < 0 or joint_loans_elsewhere_minor < 0:
            raise InvalidAgreement("capital and loan figures must not be negative", field="net_tier1_capital_minor")
        pid = partner_id or new_id("bank")

        def work(conn: Connection) -> None:
            p = t.partners.c
            if conn.execute(sa.select(p.id).where(sa.or_(p.id == pid, p.member == member))).first():
                raise PartnerTaken(f"a partner with id {pid} or member {member} exists", field="member")
            conn.execute(
                t.partners.insert().values(
                    id=pid,
                    name=name,
                    member=member,
                    currency=currency,
                    net_tier1_capital_minor=net_tier1_capital_minor,
                    total_loans_minor=total_loans_minor,
                    joint_loans_elsewhere_minor=joint_loans_elsewhere_minor,
                    bank_account_token=bank_account_token or f"bank-{pid}",
                    products=list(agreement.products),
                    share_min_bps=agreement.share_min_bps,
                    share_max_bps=agreement.share_max_bps,
                    exposure_cap_minor=agreement.exposure_cap_minor,
                    score_floor=agreement.score_floor,
                    term_months_max=agreement.term_months_max,
                    bank_rate_micro=int(agreement.bank_rate * 1_000_000),
                    fees_to=agreement.fees_to,
                    penalty_to=agreement.penalty_to,
                    created_at=self.clock.now(),
                )
            )

        self.db.run(work)
        for purpose in ("due_to_partner", "participations"):
            self._account(f"colending:{pid}:{purpose}", currency, "liability")
        self.house_accounts(currency)
        return self.get_partner(pid)

    def partner_for_member(self, member: str) -> str | None:
        return self.db.run(
            lambda conn: conn.execute(
                sa.select(t.partners.c.id).where(t.partners.c.member == member)
            ).scalar_one_or_none(),
            readonly=True,
        )

    def get_partner(self, partner_id: str) -> dict[str, Any]:
        row = self.db.run(
            lambda conn: conn.execute(sa.select(t.partners).where(t.partners.c.id == partner_id)).one_or_none(),
            readonly=True,
        )
        if row is None:
            raise PartnerNotFound(f"no partner bank {partner_id}", field="partner_id")
        c = row.currency
        return {
            "partner_id": row.id,
            "name": row.name,
            "member": row.member,
            "currency": c,
            "net_tier1_capital": {"amount_minor": row.net_tier1_capital_minor, "currency": c},
            "total_loans": {"amount_minor": row.total_loans_minor, "currency": c},
            "outstanding": {"amount_minor": row.outstanding_minor, "currency": c},
            "agreement": {
                "products": list(row.products),
                "share_min_bps": row.share_min_bps,
                "share_max_bps": row.share_max_bps,
                "exposure_cap": {"amount_minor": row.exposure_cap_minor, "currency": c},
                "score_floor": row.score_floor,
                "term_months_max": row.term_months_max,
                "bank_rate": str(Decimal(row.bank_rate_micro) / 1_000_000),
                "fees_to": row.fees_to,
                "penalty_to": row.penalty_to,
            },
        }

    def list_partners(self) -> list[dict[str, Any]]:
        ids = self.db.run(
            lambda conn: list(conn.execute(sa.select(t.partners.c.id).order_by(t.partners.c.id)).scalars()),
            readonly=True,
        )
        return [self.get_partner(pid) for pid in ids]

    # ------------------------------------------------------------ ledger accounts

    def _account(self, code: str, currency: str, type_: str) -> int:
        cached = self._ledger_accounts.get(code)
        if cached is not None:
            return cached
        found = self.ledger.ensure_account(
            member=LEDGER_MEMBER, code=code, currency=currency, type=type_, uses_deltas=True
        )
        self._ledger_accounts[code] = found.id
        return found.id

    def house_accounts(self, currency: str) -> dict[str, int]:
        """The platform's co-lending accounts of a currency (opened on first use)."""
        self.payments.ensure_house_accounts(currency)
        return {
            "interest_to_partners": self._account(f"colending:interest_to_partners:{currency}", currency, "expense"),
            "fees_to_partners": self._account(f"colending:fees_to_partners:{currency}", currency, "expense"),
            "recoveries_to_partners": self._account(
                f"colending:recoveries_to_partners:{currency}", currency, "expense"
            ),
            "losses_borne_by_partners": self._account(
                f"colending:losses_borne_by_partners:{currency}", currency, "income"
            ),
        }

    # ------------------------------------------------------------ funding

    def _allocate(self, conn: Connection, request: FundingRequest) -> tuple[FundingShare, ...]:
        bd = request.business_date or business_dates.current(conn, PLATFORM_CORE, SERVICE)
        rules = in_force(self.rule_sets, bd)
        currency = Currency.of(request.currency)
        principal = request.principal_minor
        p = t.partners.c
        query = sa.select(t.partners).where(p.active == 1, p.currency == request.currency).order_by(p.id)
        if self.db.is_postgres:
            query = query.with_for_update()
        partners = conn.execute(query).all()
        platform_min = platform_share_min(Money(principal, currency), rules).amount_minor
        platform_max = share_floor(principal, self.platform_share_max_bps)
        banks: list[BankCapacity] = []
        rates: dict[str, int] = {}
        for row in partners:
            if request.product_code not in row.products or request.score < row.score_floor:
                continue
            if request.kind == "loan" and (request.term_months or 0) > row.term_months_max:
                continue
            tier1, joint = _regulatory_headroom(row, rules, currency)
            banks.append(
                BankCapacity(
                    partner_id=row.id,
                    share_max_minor=share_floor(principal, row.share_max_bps),
                    share_min_minor=share_ceil(principal, row.share_min_bps),
                    exposure_headroom_minor=row.exposure_cap_minor - row.outstanding_minor,
                    tier1_headroom_minor=tier1,
                    joint_headroom_minor=joint,
                )
            )
            rates[row.id] = row.bank_rate_micro
        shares = split_funding(principal, platform_min_minor=platform_min, platform_max_minor=platform_max, banks=banks)
        # the rules in force, checked on the result (the split is built to pass them; this proves it)
        checks = check_colending_split(LoanSplit(Money(principal, currency), Money(shares[PLATFORM], currency)), rules)
        by_id = {row.id: row for row in partners}
        for partner_id, share in shares.items():
            if partner_id == PLATFORM:
                continue
            row = by_id[partner_id]
            checks += check_partner_limits(_position(row, currency, row.outstanding_minor + share), rules)
        failed = failures(checks)
        if failed:
            raise FundingNotPossible(
                "; ".join(f"{c.rule_id}: {c.reason}" for c in failed), rule_ids=[c.rule_id for c in failed]
            )
        weights = interest_weights(shares, request.rate_micro, rates)
        conn.execute(
            t.participations.insert(),
            [
                {
                    "account_ref": request.account_ref,
                    "participant": name,
                    "product_code": request.product_code,
                    "currency": request.currency,
                    "kind": request.kind,
                    "weight_minor": share,
                    "interest_weight": weights[name],
                    "outstanding_minor": 0,
                    "opened_on": bd,
                }
                for name, share in sorted(shares.items())
            ],
        )
        grown = [{"partner": pid, "delta": share} for pid, share in shares.items() if pid != PLATFORM and share]
        if grown:
            conn.execute(_PARTNER_OUTSTANDING, grown)
        return tuple(FundingShare(name, share) for name, share in sorted(shares.items()))

    # ------------------------------------------------------------ sharing the cash flows

    def process_events(self, *, limit: int = EVENTS_PAGE) -> int:
        """Share the cash flows of lending's events not yet processed; returns how many of them were read."""
        return self._process_page(limit)[0]

    def process_all(self) -> int:
        total = 0
        while True:
            read, more = self._process_page(EVENTS_PAGE)
            total += read
            if not more:
                return total

    def _process_page(self, limit: int) -> tuple[int, bool]:
        """One page of the events that move money: (how many were read, whether more may follow).

        Only the topics in `SHARED_TOPICS` are read, through the outbox's (topic, position) index: the other
        events (payments', scoring's, lending's decisions) are passed over without being loaded. Positions
        are gapless and commit-ordered, so when fewer than `limit` of them follow, every event through the
        outbox's last position (read first) has been seen, and the consumer moves there as it would reading
        them all."""

        def work(conn: Connection) -> tuple[int, bool]:
            if self.db.is_postgres:  # until the consumer's first position is stored, FOR UPDATE locks no row
                conn.execute(_CONSUMER_LOCK, {"k": f"outbox:{CONSUMER}"})
            position = outbox.consumer_position(conn, PLATFORM_CORE, CONSUMER, lock=True)
            last = int(conn.execute(_OUTBOX_LAST).scalar_one_or_none() or 0)
            if last <= position:
                return 0, False
            stored = outbox.read_after(conn, PLATFORM_CORE, position, topics=SHARED_TOPICS, limit=limit)
            if stored:
                book = _Book.load(conn, {e.aggregate_id for e in stored})
                rows: list[dict[str, Any]] = []
                for event in stored:
                    rows += book.apply(event)
                book.save(conn)
                if rows:
                    conn.execute(t.movements.insert(), rows)
            more = len(stored) >= limit
            through = stored[-1].position if more else max(last, stored[-1].position if stored else 0)
            outbox.advance_consumer(conn, PLATFORM_CORE, CONSUMER, through, self.clock.now())
            return len(stored), more

        return self.db.run(work)

    # ------------------------------------------------------------ settlement

    def settle(self, business_date: date | None = None) -> list[dict[str, Any]]:
        """Net each partner's unsettled movements up to `business_date` (default: the day before the
        current business date) into one ledger entry and one rail payment; returns the statements.

        Set-based: one read finds the partners to settle (movements not yet settled, no settlement for the
        date), so a partner with nothing to settle costs nothing; one transaction marks and nets every such
        partner's movements and posts their entries; the rail payments follow, then one transaction records
        the rail's answers and reads the statements."""
        current = self.ledger.business_date()
        day = business_date or current - timedelta(days=1)
        if day > current:  # the open date may be settled (later movements wait for the next); the future not
            raise SettlementDateInvalid(
                f"{day} is after the business date {current}: nothing can be settled for it", field="business_date"
            )
        self.process_all()
        self._send_unanswered(day)
        partners = self.db.run(lambda conn: conn.execute(_SETTLEMENT_CANDIDATES, {"day": day}).all(), readonly=True)
        already = sum(1 for partner in partners if partner.settled)
        to_settle = [partner for partner in partners if partner.pending and not partner.settled]
        made: list[dict[str, Any]] = []
        if to_settle:
            accounts = {
                partner.id: (
                    self.house_accounts(partner.currency),
                    self._account(f"colending:{partner.id}:due_to_partner", partner.currency, "liability"),
                    self._account(f"colending:{partner.id}:participations", partner.currency, "liability"),
                    self.payments.house_account("settlement", partner.currency),
                )
                for partner in to_settle
            }
            made, settled_meanwhile = self.db.run(lambda conn: self._settle_partners(conn, to_settle, accounts, day))
            already += settled_meanwhile
        outcomes, failed = self._send(
            [
                (s["settlement_id"], s["end_to_end_id"], s["net"], s["currency"], s["bank_account_token"])
                for s in made
                if s["net"]
            ]
        )

        def record(conn: Connection) -> list[dict[str, Any]]:  # the rail's answers, and the statements
            if outcomes:
                conn.execute(_SETTLEMENT_STATUS, outcomes)
            return [_statement(conn, settlement["partner_id"], day) for settlement in made]

        statements = self.db.run(record, readonly=not outcomes) if made else []
        if failed is not None:  # the others were sent and their answers kept; this one is sent again next run
            raise failed
        if already and not statements:
            raise SettlementExists(f"every partner is settled for {day}")
        return statements

    def _send(
        self, instructions: list[tuple[str, str, int, str, str]]
    ) -> tuple[list[dict[str, str]], Exception | None]:
        """Each settlement's payment to the rail (settlement id, end-to-end id, net, currency, bank token):
        the answers, and the first error a submission raised. A submission that raises does not stop the
        others; its settlement stays `submitted` (no answer), and the next `settle` sends it again under the
        same end-to-end id, which the rail treats as the same instruction."""
        outcomes: list[dict[str, str]] = []
        failed: Exception | None = None
        for settlement_id, end_to_end_id, net, currency, token in instructions:
            try:
                outcome = self.payments.rail.submit(
                    RailInstruction(
                        end_to_end_id=end_to_end_id,
                        direction="pay_out" if net > 0 else "collect",
                        amount_minor=abs(net),
                        currency=currency,
                        account_reference=token,
                    )
                )
            except Exception as exc:  # a lost answer: recorded as none, sent again next run
                failed = failed or exc
                continue
            outcomes.append({"settlement": settlement_id, "outcome": RailOutcome(outcome).value})
        return outcomes, failed

    def _send_unanswered(self, through: date) -> None:
        """Settlements through `through` whose payment has no answer from the rail yet (a submission that
        raised, or a run stopped between the settlement's commit and the rail): sent again, answers kept."""
        rows = self.db.run(lambda conn: conn.execute(_UNANSWERED, {"day": through}).all(), readonly=True)
        if not rows:
            return
        outcomes, failed = self._send([(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows])
        if outcomes:
            self.db.run(lambda conn: conn.execute(_SETTLEMENT_STATUS, outcomes))
        if failed is not None:
            raise failed

    def _settle_partners(
        self,
        conn: Connection,
        partners: list[Any],
        accounts: dict[str, tuple[dict[str, int], int, int, int]],
        day: date,
    ) -> tuple[list[dict[str, Any]], int]:
        """In one transaction, each partner's settlement (in partner id order): the movements marked and
        netted, the ledger entries posted together, the settlement rows. Returns the settlements made and
        how many partners turned out to be settled already (by another run meanwhile)."""
        made: list[dict[str, Any]] = []
        entries: list[PostEntry] = []
        settled_meanwhile = 0
        for partner in partners:
            partner_id, currency = partner.id, partner.currency
            if conn.execute(_SETTLEMENT_EXISTS, {"partner": partner_id, "day": day}).first():
                settled_meanwhile += 1
                continue
            settlement_id = new_id("stl")
            # mark first, then net exactly the rows marked: a movement the event consumer commits meanwhile
            # (PostgreSQL, READ COMMITTED) is either among them or left for the next settlement
            marked = conn.execute(
                _MARK_MOVEMENTS, {"settlement": settlement_id, "partner": partner_id, "day": day}
            ).all()
            lines = dict.fromkeys(COMPONENTS, 0)
            for component, amount in marked:
                lines[component] += int(amount)
            if not any(lines.values()):
                if marked:  # movements that cancel out: left for a settlement with something to pay
                    conn.execute(_UNMARK_MOVEMENTS, {"settlement": settlement_id})
                continue
            house, due, participations, settlement_account = accounts[partner_id]
            net = sum(lines[c] for c in CASH_COMPONENTS)
            legs: list[tuple[int, Side, int]] = [
                # funding calls: the bank's stake grows, and it owes us the cash
                (due, Side.DEBIT, -lines["funding"]),
                (participations, Side.CREDIT, -lines["funding"]),
                # principal repaid and losses: the bank's stake shrinks
                (participations, Side.DEBIT, lines["principal"] + lines["loss"]),
                (due, Side.CREDIT, lines["principal"]),
                (house["losses_borne_by_partners"], Side.CREDIT, lines["loss"]),
                (house["interest_to_partners"], Side.DEBIT, lines["interest"]),
                (house["fees_to_partners"], Side.DEBIT, lines["fees"] + lines["penalty"]),
                (house["recoveries_to_partners"], Side.DEBIT, lines["recovery"]),
                (due, Side.CREDIT, lines["interest"] + lines["fees"] + lines["penalty"] + lines["recovery"]),
                # the cash, through the custodian bank: we pay a positive net, the bank pays a negative one
                (due, Side.DEBIT, net) if net > 0 else (due, Side.CREDIT, -net),
                (settlement_account, Side.CREDIT, net) if net > 0 else (settlement_account, Side.DEBIT, -net),
            ]
            postings = _net_postings(legs, currency)
            settlement: dict[str, Any] = {
                "settlement_id": settlement_id,
                "partner_id": partner_id,
                "currency": currency,
                "lines": lines,
                "net": net,
                "end_to_end_id": f"CL{settlement_id}"[:35],
                "bank_account_token": partner.bank_account_token,
                "entry": None,
            }
            if postings:
                settlement["entry"] = len(entries)
                entries.append(
                    PostEntry(
                        LEDGER_MEMBER,
                        f"colending:settlement:{partner_id}:{day.isoformat()}",
                        postings,
                        f"co-lending settlement {partner_id} {day.isoformat()}",
                    )
                )
            made.append(settlement)
        results = self.ledger.post_in_transaction(conn, entries) if entries else []
        refused = [result for result in results if not result.ok]
        if refused:
            raise CreditstackError(f"the ledger refused the settlement: {refused[0].error_code}")
        if made:
            now = self.clock.now()
            conn.execute(
                t.settlements.insert(),
                [
                    {
                        "id": settlement["settlement_id"],
                        "partner_id": settlement["partner_id"],
                        "business_date": day,
                        "currency": settlement["currency"],
                        "lines": settlement["lines"],
                        "net_minor": settlement["net"],
                        "status": "submitted" if settlement["net"] else "settled",
                        "end_to_end_id": settlement["end_to_end_id"] if settlement["net"] else None,
                        "entry_seq": None if settlement["entry"] is None else results[settlement["entry"]].entry_seq,
                        "created_at": now,
                    }
                    for settlement in made
                ],
            )
        return made, settled_meanwhile

    # ------------------------------------------------------------ statements and the partner's view

    def statement(self, partner_id: str, day: date) -> dict[str, Any]:
        return self.db.run(partial(_statement, partner_id=partner_id, day=day), readonly=True)

    def statements(self, partner_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        s = t.settlements.c
        days = self.db.run(
            lambda conn: list(
                conn.execute(
                    sa.select(s.business_date)
                    .where(s.partner_id == partner_id)
                    .order_by(s.business_date.desc())
                    .limit(min(limit, 500))
                ).scalars()
            ),
            readonly=True,
        )
        return [self.statement(partner_id, day) for day in days]

    def statement_csv(self, partner_id: str, day: date) -> str:
        statement = self.statement(partner_id, day)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["partner_id", "business_date", "account_id", "component", "amount_minor", "currency"])
        currency = statement["net"]["currency"]
        for line in statement["accounts"]:
            writer.writerow(
                [
                    partner_id,
                    statement["business_date"],
                    line["account_id"],
                    line["component"],
                    line["amount_minor"],
                    currency,
                ]
            )
        for component, amount in statement["lines"].items():
            writer.writerow(
                [partner_id, statement["business_date"], "TOTAL", component, amount["amount_minor"], currency]
            )
        writer.writerow(
            [partner_id, statement["business_date"], "NET", "net", statement["net"]["amount_minor"], currency]
        )
        return out.getvalue()

    def reconcile(self) -> dict[str, Any]:
        """Per partner, subledger against ledger to the unit: the `participations` account plus the stake
        changes not yet settled equals the partner's outstanding principal in the participations, and
        `due_to_partner` is zero (each settlement entry clears what it nets)."""
        report: dict[str, Any] = {"partners": [], "clean": True}
        for partner in self.list_partners():
            pid, currency = partner["partner_id"], partner["currency"]
            outstanding, unsettled = self.db.run(partial(_stake_totals, partner_id=pid), readonly=True)
            participations = self.ledger.get_account(
                self._account(f"colending:{pid}:participations", currency, "liability")
            ).balance_minor
            due = self.ledger.get_account(
                self._account(f"colending:{pid}:due_to_partner", currency, "liability")
            ).balance_minor
            difference = participations + unsettled - outstanding
            report["partners"].append(
                {
                    "partner_id": pid,
                    "outstanding_subledger_minor": outstanding,
                    "participations_ledger_minor": participations,
                    "unsettled_stake_change_minor": unsettled,
                    "due_to_partner_ledger_minor": due,
                    "difference_minor": difference,
                }
            )
            if difference or due:
                report["clean"] = False
        return report

    def participation_refs(self, partner_id: str) -> list[str]:
        """The loans and lines the partner takes part in (their account ids)."""
        pa = t.participations.c
        return self.db.run(
            lambda conn: list(
                conn.execute(
                    sa.select(pa.account_ref).where(pa.participant == partner_id).order_by(pa.account_ref)
                ).scalars()
            ),
            readonly=True,
        )

    def portfolio(self, partner_id: str, snapshots: Iterable[Any]) -> dict[str, Any]:
        """The partner's view: its participations, by delinquency bucket from lending's month-end snapshots
        (passed in), losses, interest earned and its exposure against its limits."""
        partner = self.get_partner(partner_id)

        def work(conn: Connection) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
            pa = t.participations.c
            shares = {
                row.account_ref: (int(row.weight_minor), int(row.outstanding_minor))
                for row in conn.execute(sa.select(t.participations).where(pa.participant == partner_id))
            }
            m = t.movements.c
            totals = dict(
                conn.execute(
                    sa.select(m.component, sa.func.sum(m.amount_minor))
                    .where(m.partner_id == partner_id)
                    .group_by(m.component)
                ).all()
            )
            return shares, {k: int(v or 0) for k, v in totals.items()}

        shares, totals = self.db.run(work, readonly=True)
        buckets: dict[str, int] = defaultdict(int)
        reported: set[str] = set()
        for snap in snapshots:
            if snap["account_id"] in shares:
                buckets[str(int(snap["bucket"]))] += shares[snap["account_id"]][1]
                reported.add(snap["account_id"])
        # opened since the last month end: no snapshot yet, shown apart so that the buckets add up
        unreported = sum(o for ref, (_, o) in shares.items() if ref not in reported)
        if unreported:
            buckets["not_yet_reported"] += unreported
        outstanding = sum(o for _, o in shares.values())
        c = partner["currency"]
        return {
            "partner_id": partner_id,
            "loans": len(shares),
            "outstanding": {"amount_minor": outstanding, "currency": c},
            "funded": {"amount_minor": -totals.get("funding", 0), "currency": c},
            "principal_repaid": {"amount_minor": totals.get("principal", 0), "currency": c},
            "interest_earned": {"amount_minor": totals.get("interest", 0), "currency": c},
            # interest earned per unit funded so far (not annualised), six places
            "interest_yield": str(
                (Decimal(totals.get("interest", 0)) / Decimal(-totals["funding"])).quantize(Decimal("0.000001"))
                if totals.get("funding")
                else Decimal(0)
            ),
            "fees_earned": {"amount_minor": totals.get("fees", 0) + totals.get("penalty", 0), "currency": c},
            "losses": {"amount_minor": totals.get("loss", 0), "currency": c},
            "recoveries": {"amount_minor": totals.get("recovery", 0), "currency": c},
            "buckets": {k: {"amount_minor": v, "currency": c} for k, v in sorted(buckets.items())},
            "exposure": partner["outstanding"],
            "limits": {
                "agreement_exposure_cap": partner["agreement"]["exposure_cap"],
                "tier1_capital_25pct": {
                    "amount_minor": partner["net_tier1_capital"]["amount_minor"] // 4,
                    "currency": c,
                },
            },
        }

    # ------------------------------------------------------------ the web console's reads

    def statement_summaries(
        self, partner_id: str, *, before: date | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The partner's statements newest first, without their account lines (one read, however many
        accounts each statement covers): date, status, lines per component, net and direction. Paged by
        `before`, the oldest date of the previous page."""
        s = t.settlements.c
        query = (
            sa.select(t.settlements)
            .where(s.partner_id == partner_id)
            .order_by(s.business_date.desc())
            .limit(max(1, min(limit, 500)))
        )
        if before is not None:
            query = query.where(s.business_date < before)
        rows = self.db.run(lambda conn: conn.execute(query).all(), readonly=True)
        return [
            {
                "partner_id": partner_id,
                "business_date": row.business_date.isoformat(),
                "status": row.status,
                "lines": {k: {"amount_minor": int(v), "currency": row.currency} for k, v in row.lines.items()},
                "net": {"amount_minor": row.net_minor, "currency": row.currency},
                "direction": "platform_pays_bank"
                if row.net_minor > 0
                else ("bank_pays_platform" if row.net_minor < 0 else "nothing"),
            }
            for row in rows
        ]


class ColendingAllocator:
    """Lending's `FundingAllocator`, implemented by co-lending."""

    def __init__(self, service: ColendingService) -> None:
        self.service = service

    def allocate(self, transaction: Any, request: FundingRequest) -> tuple[FundingShare, ...]:
        return self.service._allocate(transaction, request)


# ---------------------------------------------------------------- helpers


def _statement(conn: Connection, partner_id: str, day: date) -> dict[str, Any]:
    row = conn.execute(_SETTLEMENT_ROW, {"partner": partner_id, "day": day}).one_or_none()
    if row is None:
        raise StatementNotFound(f"no settlement for {partner_id} on {day}")
    per_account = conn.execute(_SETTLEMENT_ACCOUNTS, {"settlement": row.id}).all()
    c = row.currency
    return {
        "partner_id": partner_id,
        "business_date": day.isoformat(),
        "settlement_id": row.id,
        "status": row.status,
        "end_to_end_id": row.end_to_end_id,
        "ledger_entry_seq": row.entry_seq,
        "lines": {k: {"amount_minor": int(v), "currency": c} for k, v in row.lines.items()},
        "net": {"amount_minor": row.net_minor, "currency": c},
        "direction": "platform_pays_bank"
        if row.net_minor > 0
        else ("bank_pays_platform" if row.net_minor < 0 else "nothing"),
        "accounts": [
            {"account_id": ref, "component": component, "amount_minor": int(amount)}
            for ref, component, amount in per_account
        ],
    }


def _stake_totals(conn: Connection, partner_id: str) -> tuple[int, int]:
    """(outstanding principal over the partner's participations, the change to its stake not yet settled:
    funding raises it, principal repaid and losses lower it)."""
    pa, m = t.participations.c, t.movements.c
    outstanding = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(pa.outstanding_minor), 0)).where(pa.participant == partner_id)
    ).scalar_one()
    rows = conn.execute(
        sa.select(m.component, sa.func.sum(m.amount_minor))
        .where(m.partner_id == partner_id, m.settlement_id.is_(None))
        .group_by(m.component)
    ).all()
    by = {c: int(v or 0) for c, v in rows}
    unsettled = -by.get("funding", 0) - by.get("principal", 0) - by.get("loss", 0)
    return int(outstanding), unsettled


def _position(row: Any, currency: Currency, with_us_minor: int) -> PartnerBankPosition:
    return PartnerBankPosition(
        bank_id=row.id,
        joint_loans_with_partner=Money(with_us_minor, currency),
        net_tier1_capital=Money(row.net_tier1_capital_minor, currency),
        joint_loans_total=Money(with_us_minor + row.joint_loans_elsewhere_minor, currency),
        total_loans=Money(row.total_loans_minor, currency),
    )


def _regulatory_headroom(row: Any, rules: Iterable[Any], currency: Currency) -> tuple[int | None, int | None]:
    """How much more the bank may take under the partner-bank ratio rules in force (rounded down)."""
    tier1: int | None = None
    joint: int | None = None
    for rule in rules:
        if rule.scope != "partner_bank" or rule.kind != "ratio_max":
            continue
        limit = rule.decimal("limit")
        numerator = rule.text("numerator")
        denominator = rule.text("denominator")
        figures = {
            "net_tier1_capital": row.net_tier1_capital_minor,
            "total_loans": row.total_loans_minor,
        }
        base = figures.get(denominator)
        if base is None:
            continue
        allowed = int(Decimal(base) * limit)  # rounded down
        if numerator == "joint_loans_with_partner":
            headroom = allowed - row.outstanding_minor
            tier1 = headroom if tier1 is None else min(tier1, headroom)
        elif numerator == "joint_loans_total":
            headroom = allowed - row.outstanding_minor - row.joint_loans_elsewhere_minor
            joint = headroom if joint is None else min(joint, headroom)
    return tier1, joint


def _net_postings(legs: list[tuple[int, Side, int]], currency: str) -> tuple[PostingSpec, ...]:
    net: dict[int, int] = defaultdict(int)
    for account, side, amount in legs:
        net[account] += amount if side is Side.DEBIT else -amount
    out = []
    for account, amount in sorted(net.items()):
        if amount > 0:
            out.append(PostingSpec(account, Side.DEBIT, amount, currency))
        elif amount < 0:
            out.append(PostingSpec(account, Side.CREDIT, -amount, currency))
    return tuple(out)


class _Book:
    """The participations, running totals and allocations of the accounts a batch of events touches."""

    def __init__(
        self,
        participants: dict[str, dict[str, tuple[int, int, int]]],
        totals: dict[tuple[str, str], int],
        allocated: dict[tuple[str, str, str], int],
    ) -> None:
        self.participants = participants  # ref -> participant -> (weight, interest weight, outstanding)
        self.totals = totals
        self.allocated = allocated
        self.fees_to: dict[str, tuple[str, str]] = {}
        self.dirty_totals: set[tuple[str, str]] = set()
        self.dirty_allocated: set[tuple[str, str, str]] = set()
        self.dirty_outstanding: set[tuple[str, str]] = set()
        self.outstanding_delta: dict[str, int] = defaultdict(int)  # partner -> change of its exposure
        self.kinds: dict[str, str] = {}

    @classmethod
    def load(cls, conn: Connection, refs: set[str]) -> _Book:
        pa, to, al = t.participations.c, t.totals.c, t.allocated.c
        ref_list = sorted(refs)
        participants: dict[str, dict[str, tuple[int, int, int]]] = defaultdict(dict)
        totals: dict[tuple[str, str], int] = {}
        allocated: dict[tuple[str, str, str], int] = {}
        kinds: dict[str, str] = {}
        for start in range(0, len(ref_list), 1_000):
            chunk = ref_list[start : start + 1_000]
            for row in conn.execute(sa.select(t.participations).where(pa.account_ref.in_(chunk))):
                kinds[row.account_ref] = row.kind
                participants[row.account_ref][row.participant] = (
                    int(row.weight_minor),
                    int(row.interest_weight),
                    int(row.outstanding_minor),
                )
            for row in conn.execute(sa.select(t.totals).where(to.account_ref.in_(chunk))):
                totals[(row.account_ref, row.component)] = int(row.total_minor)
            for row in conn.execute(sa.select(t.allocated).where(al.account_ref.in_(chunk))):
                allocated[(row.account_ref, row.participant, row.component)] = int(row.allocated_minor)
        book = cls(dict(participants), totals, allocated)
        book.kinds = kinds
        partners = {p for parts in book.participants.values() for p in parts if p != PLATFORM}
        if partners:
            for row in conn.execute(
                sa.select(t.partners.c.id, t.partners.c.fees_to, t.partners.c.penalty_to).where(
                    t.partners.c.id.in_(sorted(partners))
                )
            ):
                book.fees_to[row.id] = (row.fees_to, row.penalty_to)
        return book

    def _weights(self, ref: str, component: str) -> dict[str, int]:
        parts = self.participants[ref]
        if component == "interest":
            return {p: w[1] for p, w in parts.items()}
        if component in ("fees", "penalty"):
            index = 0 if component == "fees" else 1
            weights = {}
            platform = 0
            for p, w in parts.items():
                if p == PLATFORM or self.fees_to.get(p, ("pro_rata", "pro_rata"))[index] == "pro_rata":
                    weights[p] = w[0]
                else:
                    weights[p] = 0
                    platform += w[0]
            weights[PLATFORM] = weights.get(PLATFORM, 0) + platform
            return weights
        return {p: w[0] for p, w in parts.items()}

    def _share(self, ref: str, component: str, amount: int) -> dict[str, int]:
        key = (ref, component)
        weights = self._weights(ref, component)
        if sum(weights.values()) == 0:
            return {}
        # principal repaid and principal lost are split as one running total: split apart, a loan paid in
        # part then charged off could leave a participant's principal one unit off zero
        group = PRINCIPAL_REDUCTIONS if component in PRINCIPAL_REDUCTIONS else (component,)
        total = sum(self.totals.get((ref, c), 0) for c in group) + amount
        allocated = {p: sum(self.allocated.get((ref, p, c), 0) for c in group) for p in weights}
        increments = cumulative_split(total, weights, allocated)
        self.totals[key] = self.totals.get(key, 0) + amount
        self.dirty_totals.add(key)
        for p, inc in increments.items():
            self.allocated[(ref, p, component)] = self.allocated.get((ref, p, component), 0) + inc
            self.dirty_allocated.add((ref, p, component))
        return increments

    def _stake(self, ref: str, participant: str, delta: int) -> None:
        weight, interest, outstanding = self.participants[ref][participant]
        self.participants[ref][participant] = (weight, interest, outstanding + delta)
        self.dirty_outstanding.add((ref, participant))

    def apply(self, event: outbox.StoredEvent) -> list[dict[str, Any]]:
        ref = event.aggregate_id
        if ref not in self.participants or set(self.participants[ref]) == {PLATFORM}:
            return []  # an account the platform funds alone (or an application event): nothing to share
        payload = event.payload
        topic = event.topic.removeprefix("lending.")
        flows: list[tuple[str, int, int]] = []  # (component, amount, stake sign)
        if topic == "loan_disbursed":
            flows.append(("funding", int(payload["principal_minor"]), +1))
        elif topic == "line_drawn":
            flows.append(("funding", int(payload.get("principal_minor", payload["amount_minor"])), +1))
        elif topic == "repayment_received":
            flows += [
                ("principal", int(payload.get("principal_minor", 0)), -1),
                ("interest", int(payload.get("interest_minor", 0)), 0),
                ("fees", int(payload.get("fees_minor", 0)), 0),
                ("penalty", int(payload.get("penalty_minor", 0)), 0),
            ]
        elif topic == "line_refunded":
            flows.append(("principal", int(payload.get("principal_minor", 0)), -1))
        elif topic == "charged_off":
            flows.append(("loss", int(payload.get("principal_minor", 0)), -1))
        elif topic == "recovered":
            flows.append(("recovery", int(payload.get("amount_minor", 0)), 0))
        rows = []
        for component, amount, stake in flows:
            if amount == 0:
                continue
            for participant, increment in self._share(ref, component, amount).items():
                if stake:
                    self._stake(ref, participant, stake * increment)
                if participant == PLATFORM or increment == 0:
                    continue
                if stake < 0 and self.kinds.get(ref) == "loan":  # a line's commitment is its limit share
                    self.outstanding_delta[participant] += stake * increment
                rows.append(
                    {
                        "partner_id": participant,
                        "business_date": event.business_date,
                        "account_ref": ref,
                        "component": component,
                        # funding is what the bank owes us (negative); the rest we owe the bank, losses aside
                        "amount_minor": -increment if component == "funding" else increment,
                        "event_position": event.position,
                    }
                )
        return rows

    def save(self, conn: Connection) -> None:
        """Write back what the batch changed: one multi-row statement per table (upserts), not a round trip
        per row."""
        if self.dirty_totals:
            conn.execute(
                sa.text(
                    "INSERT INTO colending_totals (account_ref, component, total_minor) VALUES (:r, :c, :v) "
                    "ON CONFLICT (account_ref, component) DO UPDATE SET total_minor = excluded.total_minor"
                ),
                [{"r": r, "c": c, "v": self.totals[(r, c)]} for r, c in sorted(self.dirty_totals)],
            )
        if self.dirty_allocated:
            conn.execute(
                sa.text(
                    "INSERT INTO colending_allocated (account_ref, participant, component, allocated_minor) "
                    "VALUES (:r, :p, :c, :v) ON CONFLICT (account_ref, participant, component) "
                    "DO UPDATE SET allocated_minor = excluded.allocated_minor"
                ),
                [{"r": r, "p": p, "c": c, "v": self.allocated[(r, p, c)]} for r, p, c in sorted(self.dirty_allocated)],
            )
        deltas = sorted(self.outstanding_delta.items())
        changed = [{"partner": pid, "delta": delta} for pid, delta in deltas if delta]
        if changed:
            conn.execute(_PARTNER_OUTSTANDING, changed)
        if self.dirty_outstanding:
            conn.execute(
                sa.text(
                    "UPDATE colending_participations SET outstanding_minor = :v "
                    "WHERE account_ref = :r AND participant = :p"
                ),
                [{"r": r, "p": p, "v": self.participants[r][p][2]} for r, p in sorted(self.dirty_outstanding)],
            )

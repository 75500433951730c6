"""Ports lending offers to other contexts, and the implementations it ships.

`ScoreProvider`: the decision asks it for a score, a risk grade and reasons. Lending ships a rules-only
provider (`RulesScoreProvider`); the scoring context plugs in its models. `FundingAllocator`: acceptance
asks it who funds each loan; lending ships `OwnFundsAllocator` (the platform funds everything); the
co-lending context plugs in partner banks. Neither port does I/O of lending's tables: they get what they
need in the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

#: The score scale of the port (scoring's default: 300–900, 600 at 50:1 good:bad odds); higher is better.
SCORE_MIN = 300
SCORE_MAX = 900
#: The rules provider's own points band: its grades are spread over 300–850, as they always were.
RULES_POINTS_MAX = 850


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    customer_id: str
    product_code: str
    currency: str
    amount_minor: int
    income_3y_average_minor: int | None
    existing_principal_minor: int  # outstanding principal on the platform before this application
    worst_dpd_now: int  # the worst days past due over the customer's open accounts
    charged_off_before: bool
    accounts_repaid: int  # loans closed after full repayment
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}


@dataclass(frozen=True, slots=True)
class ScoreResult:
    score: int
    grade: Decimal  # 0 (best) … 1 (worst): where on the product's rate band the offer sits
    approve: bool
    reasons: tuple[Reason, ...]  # adverse-action reasons, most important first
    model: str
    features: dict[str, Any] = field(default_factory=dict)  # the feature vector scored (a model provider's)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "score": self.score,
            "grade": str(self.grade),
            "approve": self.approve,
            "reasons": [r.to_json() for r in self.reasons],
            "model": self.model,
        }
        if self.features:
            body["features"] = self.features
        return body


class ScoreProvider(Protocol):
    def score(self, request: ScoreRequest) -> ScoreResult: ...


@dataclass(frozen=True, slots=True)
class RulesScoreProvider:
    """A transparent points model from what the platform knows without a scoring model.

    Starts at 680; loses points for a high ask against income, current delinquency and an earlier
    charge-off; gains for loans repaid. Declines below `cutoff`. Every deduction is a reason.
    """

    cutoff: int = 560
    model: str = "rules-v1"

    def score(self, request: ScoreRequest) -> ScoreResult:
        points = 680
        reasons: list[tuple[int, Reason]] = []
        income = request.income_3y_average_minor
        exposure = request.existing_principal_minor + request.amount_minor
        if income is None or income <= 0:
            points -= 120
            reasons.append((120, Reason("R01", "no declared income")))
        else:
            ratio = Decimal(exposure) / Decimal(income)
            if ratio > Decimal("0.5"):
                points -= 100
                reasons.append((100, Reason("R02", "amount owed high against income")))
            elif ratio > Decimal("0.25"):
                points -= 40
                reasons.append((40, Reason("R02", "amount owed high against income")))
        if request.worst_dpd_now >= 30:
            points -= 200
            reasons.append((200, Reason("R03", "an account is 30 or more days past due")))
        elif request.worst_dpd_now > 0:
            points -= 80
            reasons.append((80, Reason("R04", "an account is past due")))
        if request.charged_off_before:
            points -= 150
            reasons.append((150, Reason("R05", "an earlier account was charged off")))
        points += min(request.accounts_repaid, 5) * 10
        points = max(SCORE_MIN, min(RULES_POINTS_MAX, points))
        grade = Decimal(RULES_POINTS_MAX - points) / Decimal(RULES_POINTS_MAX - SCORE_MIN)
        ordered = tuple(r for _, r in sorted(reasons, key=lambda item: -item[0]))
        return ScoreResult(
            score=points,
            grade=grade.quantize(Decimal("0.0001")),
            approve=points >= self.cutoff,
            reasons=ordered,
            model=self.model,
        )


@dataclass(frozen=True, slots=True)
class FundingRequest:
    product_code: str
    currency: str
    principal_minor: int  # a loan's principal; a line's limit
    score: int
    customer_id: str
    account_ref: str = ""
    kind: str = "loan"  # "loan" | "line"
    term_months: int | None = None
    rate_micro: int = 0  # the borrower's annual rate in millionths
    business_date: date | None = None


@dataclass(frozen=True, slots=True)
class FundingShare:
    funder: str  # "platform" or a partner bank's id
    principal_minor: int

    def to_json(self) -> dict[str, Any]:
        return {"funder": self.funder, "principal_minor": self.principal_minor}


class FundingAllocator(Protocol):
    """Who funds a loan; the shares must add up to the principal exactly.

    Called inside the acceptance's transaction (`transaction` is that connection), after the account row is
    written and before the disbursement: the allocator may lock and write its own rows there, so that its
    records and the loan commit together; raising a `CreditstackError` refuses the acceptance."""

    def allocate(self, transaction: Any, request: FundingRequest) -> tuple[FundingShare, ...]: ...


@dataclass(frozen=True, slots=True)
class OwnFundsAllocator:
    """The platform funds every loan from its own balance sheet (until co-lending plugs in partners)."""

    def allocate(self, transaction: Any, request: FundingRequest) -> tuple[FundingShare, ...]:
        return (FundingShare("platform", request.principal_minor),)

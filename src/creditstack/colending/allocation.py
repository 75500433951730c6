"""Co-lending arithmetic, pure: how a loan is split at funding, and how each cash flow is shared.

**Funding split** (`split_funding`): the platform keeps at least the minimum share in force, rounded up to
the unit; each eligible bank gets at most what its agreement and the regulatory limits leave, rounded down;
the banks' part is spread pro rata to their remaining capacity (largest remainder, never above a bank's
capacity), and whatever the banks cannot take stays with the platform — up to the platform's own maximum.
A bank that takes part gets at least its agreement's minimum share. A loan no combination can fund raises
`FundingNotPossible` naming each bank's binding limit.

**Cash flows** (`cumulative_split`): a component's running total T (principal repaid, interest collected,
…) is allocated by the largest-remainder method with fixed weights, and each participant's increment is
allocate(T)[p] − allocated so far[p]. Rounding never drifts: at every moment each participant holds its
exact pro-rata amount within one unit, and when the principal repaid reaches the principal funded every
participant's principal is exactly zero. (Principal repaid and principal charged off are one running total
for this, so a loan paid in part and then charged off also ends at zero for everyone.) Largest remainder
may, rarely, move one unit from one participant to another as T grows — the Alabama paradox — so an
increment can be −1 for one participant while another's is +2; the running totals stay exact, which is
what is settled.

**Interest weights** (`interest_weights`): a bank earns min(borrower rate, bank rate) on its participation;
the excess is the platform's service fee. Interest collected is allocated with weights P_bank × min(r, r_b)
for each bank and P_platform × r + Σ P_bank × (r − min(r, r_b)) for the platform: they sum to P × r.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from creditstack.core.errors import BusinessRuleViolated, ValidationFailed
from creditstack.core.money import allocate

PLATFORM = "platform"


class FundingNotPossible(BusinessRuleViolated):
    """No split of the loan satisfies the platform's minimum share and every bank's limits."""

    code = "colending.funding_not_possible"


@dataclass(frozen=True, slots=True)
class BankCapacity:
    """What one eligible bank may take of a loan, and why: each limit in minor units (None: no such limit)."""

    partner_id: str
    share_max_minor: int  # the agreement's maximum share of this loan, rounded down
    share_min_minor: int  # the agreement's minimum share when it participates, rounded up
    exposure_headroom_minor: int | None  # agreement cap − outstanding participations
    tier1_headroom_minor: int | None  # 25 % of net tier-1 capital − outstanding participations with us
    joint_headroom_minor: int | None  # 50 % of total loans − joint loans outstanding

    def capacity(self) -> tuple[int, str]:
        """The most the bank can take, and the name of the limit that binds."""
        limits = {
            "agreement_share_max": self.share_max_minor,
            "agreement_exposure_cap": self.exposure_headroom_minor,
            "tier1_capital_25pct": self.tier1_headroom_minor,
            "joint_loans_50pct": self.joint_headroom_minor,
        }
        known = {k: max(0, v) for k, v in limits.items() if v is not None}
        binding = min(known, key=lambda k: (known[k], k))
        return known[binding], binding


def share_floor(principal_minor: int, bps: int) -> int:
    return principal_minor * bps // 10_000


def share_ceil(principal_minor: int, bps: int) -> int:
    return -(-principal_minor * bps // 10_000)


def split_funding(
    principal_minor: int,
    *,
    platform_min_minor: int,
    platform_max_minor: int,
    banks: Sequence[BankCapacity],
) -> dict[str, int]:
    """Shares of a loan: {"platform": …, partner_id: …}; they sum to the principal exactly.

    The banks take as much as they can up to what the platform's minimum leaves, pro rata to their
    capacity. When that would leave a bank below its agreement's minimum share, each bank gets its minimum
    and the rest is spread pro rata to the room above it; when the banks' minimums cannot all fit, the
    combination of banks that leaves the platform the least is used (see `_choose_banks`)."""
    if principal_minor <= 0:
        raise ValidationFailed("a loan to fund needs a positive principal", field="principal_minor")
    platform_min_minor = max(0, min(platform_min_minor, principal_minor))
    platform_max_minor = min(principal_minor, max(platform_max_minor, platform_min_minor))
    need = principal_minor - platform_max_minor  # what the banks must take at least
    room = principal_minor - platform_min_minor  # what the banks may take at most
    eligible: list[tuple[BankCapacity, int]] = []
    binding: list[str] = []  # every bank's binding limit, so a refusal says what stopped each one
    for bank in banks:
        cap, limit = bank.capacity()
        if cap >= max(bank.share_min_minor, 1):
            eligible.append((bank, cap))
            binding.append(f"{bank.partner_id}: {limit}")
        else:  # nothing left, or less than its minimum share
            binding.append(f"{bank.partner_id}: {limit}" + (" < agreement_share_min" if cap else ""))
    total_capacity = sum(cap for _, cap in eligible)
    reason = "; ".join(binding) or "no eligible partner bank"
    if total_capacity < need:
        raise FundingNotPossible(
            f"the banks can take {total_capacity} of the {need} the platform cannot fund ({reason})",
            need_minor=need,
            capacity_minor=total_capacity,
            binding=binding,
        )
    chosen = _choose_banks(eligible, need, room)
    if chosen is None:
        raise FundingNotPossible(
            f"the banks' minimum shares leave the platform more than it may fund ({reason})",
            need_minor=need,
            capacity_minor=total_capacity,
            binding=binding,
        )
    to_banks = min(room, sum(cap for _, cap in chosen))
    caps = [cap for _, cap in chosen]
    shares = _spread(to_banks, caps)
    if any(share < bank.share_min_minor for (bank, _), share in zip(chosen, shares, strict=True)):
        minimums = [bank.share_min_minor for bank, _ in chosen]
        above = _spread(to_banks - sum(minimums), [cap - low for cap, low in zip(caps, minimums, strict=True)])
        shares = [low + extra for low, extra in zip(minimums, above, strict=True)]
    out = {bank.partner_id: share for (bank, _), share in zip(chosen, shares, strict=True) if share > 0}
    return {PLATFORM: principal_minor - sum(out.values()), **out}


#: The most eligible banks searched for a combination whose minimum shares fit (2**n subsets); beyond it,
#: only the banks with the largest capacities are considered.
SPLIT_SEARCH_BANKS_MAX = 12


def _choose_banks(
    eligible: Sequence[tuple[BankCapacity, int]], need: int, room: int
) -> list[tuple[BankCapacity, int]] | None:
    """The banks that take part: every eligible bank if their minimums fit in `room`; otherwise the subset
    whose minimums fit and that can take the most (then the most banks, then the largest capacities); None
    if no subset can take `need`."""
    if sum(bank.share_min_minor for bank, _ in eligible) <= room:
        return list(eligible) if sum(cap for _, cap in eligible) >= need else None
    pool = sorted(eligible, key=lambda item: -item[1])[:SPLIT_SEARCH_BANKS_MAX]
    order = {id(item): n for n, item in enumerate(eligible)}
    best: tuple[int, tuple[tuple[BankCapacity, int], ...]] | None = None
    for size in range(len(pool), -1, -1):  # down to none: the platform alone, if it may
        for subset in combinations(pool, size):
            if sum(bank.share_min_minor for bank, _ in subset) > room:
                continue
            value = min(room, sum(cap for _, cap in subset))
            if best is None or value > best[0]:
                best = (value, subset)
    if best is None or best[0] < need:
        return None
    return sorted(best[1], key=lambda item: order[id(item)])


def _spread(total: int, capacities: Sequence[int]) -> list[int]:
    """`total` pro rata to `capacities`, never above a capacity (largest remainder, then refill)."""
    if not capacities or total <= 0:
        return [0] * len(capacities)
    parts = allocate(total, capacities)
    # pro rata to capacity never exceeds a capacity when total <= sum(capacities), except by rounding up one unit
    over = 0
    for i, (part, cap) in enumerate(zip(parts, capacities, strict=True)):
        if part > cap:
            over += part - cap
            parts[i] = cap
    for i, cap in enumerate(capacities):
        if over == 0:
            break
        take = min(over, cap - parts[i])
        parts[i] += take
        over -= take
    return parts


def cumulative_split(total_to_date: int, weights: Mapping[str, int], allocated: Mapping[str, int]) -> dict[str, int]:
    """Each participant's increment so that its running amount is its largest-remainder share of the total."""
    names = sorted(weights)
    target = allocate(total_to_date, [weights[n] for n in names])
    return {n: t - allocated.get(n, 0) for n, t in zip(names, target, strict=True)}


def interest_weights(
    principal_shares: Mapping[str, int], borrower_rate_micro: int, bank_rates_micro: Mapping[str, int]
) -> dict[str, int]:
    """Weights for sharing interest: banks at min(borrower rate, bank rate), the platform the rest."""
    weights: dict[str, int] = {}
    platform = principal_shares.get(PLATFORM, 0) * borrower_rate_micro
    for name, principal in principal_shares.items():
        if name == PLATFORM:
            continue
        earned = min(borrower_rate_micro, bank_rates_micro[name])
        weights[name] = principal * earned
        platform += principal * (borrower_rate_micro - earned)
    weights[PLATFORM] = platform
    if sum(weights.values()) == 0:  # a zero-rate loan: share as principal does (nothing to share anyway)
        return dict(principal_shares)
    return weights

"""Who lives in the synthetic economy: consumers with incomes, a latent creditworthiness, habits and
shocks; the merchants, billers and partner banks they deal with. A pure function of the seed.

Every attribute of consumer `i` comes from keyed draws (`rng`), so it does not depend on the population's
size: consumer 17 of a 1,000-consumer run is consumer 17 of a 100,000-consumer run with the same seed.
Behavioural draws are floats; everything the platform is sent is converted to integer minor units at the
source (rounded to whole yuan for incomes, to the fen for prices).

The model, in brief (numbers in `SEGMENTS` and the constants below; calibration targets in README.md):
- segment: salaried, gig worker, student, self-employed — sets the income distribution (log-normal,
  monthly, in CNY), the pay pattern (a monthly payday, weekly pay, a monthly allowance, irregular takings)
  and an offset to the latent risk;
- latent risk `r` ~ N(offset, 1): the one hidden trait that drives lateness on bills and repayments,
  over-use of credit, appetite for credit and the monthly hazard of a default episode;
- shocks: job loss and illness, month by month with a hazard (job loss more likely for gig workers and
  for higher `r`), each lasting a drawn number of months; income drops and the default hazard rises;
- default: a consumer whose default episode starts stops paying debts (the ground truth of a bad risk);
  others are only sometimes late, and cure;
- a protected attribute (sex) drawn independently of `r` given the segment — kept for fairness reports
  only, never sent to the platform as a model input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from creditstack.simulation import rng

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    share: float
    income_median_cny: float  # monthly
    income_sigma: float  # of log income
    risk_offset: float
    pay: str  # "monthly" | "weekly" | "allowance" | "irregular"
    purchases_per_month: float
    job_loss_hazard: float  # per month


SEGMENTS: tuple[Segment, ...] = (
    Segment("salaried", 0.52, 7_000, 0.45, -0.20, "monthly", 7.0, 0.004),
    Segment("gig", 0.22, 4_500, 0.55, 0.35, "weekly", 8.0, 0.012),
    Segment("student", 0.10, 1_800, 0.40, 0.25, "allowance", 9.0, 0.002),
    Segment("self_employed", 0.16, 8_000, 0.75, 0.15, "irregular", 6.0, 0.008),
)

#: Merchant categories (ISO 18245 MCC) with the share of spending a typical consumer puts there and the
#: merchant's fee in basis points.
CATEGORIES: tuple[tuple[str, str, float, int], ...] = (
    ("5411", "groceries", 0.38, 38),
    ("5812", "restaurants", 0.22, 60),
    ("4121", "transport", 0.12, 55),
    ("5311", "department stores", 0.12, 60),
    ("5732", "electronics", 0.08, 80),
    ("8062", "hospitals", 0.08, 30),
)
MERCHANTS_PER_CATEGORY = 3

#: Billers: (name, monthly amount range in CNY at the median income, issue day, days to due).
BILLERS: tuple[tuple[str, tuple[int, int], int, int], ...] = (
    ("State Grid power", (60, 320), 1, 14),
    ("Mobile operator", (40, 180), 8, 10),
    ("City water", (20, 90), 12, 15),
    ("Broadband", (60, 140), 18, 10),
)

#: Partner banks: (name, net tier-1 capital in CNY, bank's rate, share range in bps, exposure cap in CNY).
PARTNER_BANKS: tuple[tuple[str, int, str, tuple[int, int], int], ...] = (
    ("Xinhe Rural Commercial Bank", 4_000_000_000, "0.055", (1_000, 6_000), 400_000_000),
    ("Dongjiang City Commercial Bank", 9_000_000_000, "0.060", (1_000, 7_000), 900_000_000),
    ("Baiyun Trust Bank", 2_500_000_000, "0.070", (500, 4_000), 200_000_000),
    ("Huaxia Consumer Finance", 6_000_000_000, "0.065", (1_000, 5_000), 600_000_000),
)

#: Monthly hazard of the start of a default episode, at r = 0 and no shock; multiplied by exp(RISK_SLOPE·r)
#: and by SHOCK_MULTIPLIER in a month with a shock. Calibrated so that 90+ days past due within twelve
#: months runs at 3–6 % of borrowers (README: calibration).
DEFAULT_HAZARD = 0.0020
RISK_SLOPE = 1.15
SHOCK_MULTIPLIER = 5.0
ILLNESS_HAZARD = 0.003
#: Share of consumers on the platform on day 0; the rest join evenly over the first months.
FOUNDING_SHARE = 0.7
JOIN_SPREAD_DAYS = 180

_SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
    "Hu",
    "Guo",
    "He",
    "Lin",
    "Gao",
    "Luo",
    "Zheng",
    "Liang",
    "Xie",
    "Song",
    "Tang",
    "Han",
    "Feng",
    "Deng",
    "Cao",
    "Peng",
]
_GIVEN = [
    "Wei",
    "Fang",
    "Min",
    "Jing",
    "Lei",
    "Yan",
    "Jun",
    "Jie",
    "Ying",
    "Hui",
    "Tao",
    "Ming",
    "Chao",
    "Xia",
    "Ping",
    "Gang",
    "Hua",
    "Dan",
    "Bo",
    "Yu",
    "Qiang",
    "Lin",
    "Xin",
    "Yi",
    "Hao",
    "Kai",
    "Rui",
    "Ting",
    "Xue",
    "Na",
]
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

# keyed-draw streams (static attributes use day 0; per-month draws use the month number as the day)
_S_SEGMENT, _S_INCOME, _S_RISK, _S_SEX, _S_AGE, _S_PAYDAY, _S_SPEND, _S_BILLS, _S_JOIN = range(1, 10)
_S_APPETITE, _S_TRANSACTOR, _S_NAME, _S_LINE_USE = range(10, 14)
S_JOB_LOSS, S_JOB_LEN, S_ILLNESS, S_ILL_LEN, S_DEFAULT = range(20, 25)
S_CATEGORY = 100  # + category: the consumer's weight on it


@dataclass(frozen=True)
class Population:
    """The consumers as arrays indexed by consumer number, and their shocks month by month."""

    seed: int
    size: int
    start: date
    segment: I64
    income_monthly_minor: I64  # fen
    risk: F64  # latent; higher is worse
    female: B  # the protected attribute
    birth: list[date]
    payday: I64  # day of month (monthly, allowance), weekday 0–6 (weekly), unused (irregular)
    spend_share: F64  # of income spent at merchants
    purchases_per_month: F64
    category_weights: F64  # consumers × categories
    bills: B  # consumers × billers: has this bill
    bill_amount_minor: I64  # consumers × billers
    join_day: I64  # days after start
    credit_appetite: F64  # monthly probability of applying when without credit
    transactor: B  # pays a line's statement in full
    line_use: F64  # share of purchases put on the line, when they have one
    months: int
    shock: npt.NDArray[np.int8]  # consumers × months: 0 none, 1 job loss, 2 illness
    default_month: I64  # the month a default episode starts (months = never within the horizon)

    def national_id(self, i: int) -> str:
        """An 18-character PRC resident id with a valid check digit, unique per consumer number."""
        body = f"{100000 + i // 1000:06d}{self.birth[i]:%Y%m%d}{i % 1000:03d}"
        total = sum(int(d) * w for d, w in zip(body, _CN_ID_WEIGHTS, strict=True))
        return body + "10X98765432"[total % 11]

    def name(self, i: int) -> str:
        u = rng.keyed(self.seed, _S_NAME, [i])[0]
        surname = _SURNAMES[int(u % np.uint64(len(_SURNAMES)))]
        given = _GIVEN[int((u >> np.uint64(16)) % np.uint64(len(_GIVEN)))]
        if (u >> np.uint64(32)) % np.uint64(2):
            given += _GIVEN[int((u >> np.uint64(40)) % np.uint64(len(_GIVEN)))].lower()
        return f"{surname} {given}"

    def month_of(self, day: date) -> int:
        return (day.year - self.start.year) * 12 + day.month - self.start.month

    def in_shock(self, month: int) -> npt.NDArray[np.int8]:
        return self.shock[:, min(month, self.months - 1)]

    def defaulted(self, month: int) -> B:
        return self.default_month <= month


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def build(seed: int, size: int, start: date, months: int) -> Population:
    ids = np.arange(size, dtype=np.uint64)

    def u(stream: int) -> F64:
        return rng.uniform(seed, stream, ids)

    shares = np.cumsum([s.share for s in SEGMENTS])
    cut_points = np.asarray(shares / shares[-1], dtype=np.float64)
    segment = np.searchsorted(cut_points, u(_S_SEGMENT), side="right").astype(np.int64)
    seg = [SEGMENTS[k] for k in range(len(SEGMENTS))]
    median = np.array([s.income_median_cny for s in seg])[segment]
    sigma = np.array([s.income_sigma for s in seg])[segment]
    income = median * np.exp(sigma * rng.normal(seed, _S_INCOME, ids))
    income_minor = (np.maximum(np.rint(income), 300) * 100).astype(np.int64)  # whole yuan, at least 300
    risk = np.array([s.risk_offset for s in seg])[segment] + rng.normal(seed, _S_RISK, ids)
    female = u(_S_SEX) < np.where(segment == 1, 0.38, 0.52)
    age = np.where(segment == 2, 18 + (u(_S_AGE) * 6), 22 + (u(_S_AGE) * 40)).astype(np.int64)
    day_of_year = (rng.keyed(seed, _S_AGE + 50, ids) % np.uint64(365)).astype(np.int64)
    birth = [
        date(start.year - int(a) - 1, 1, 1) + timedelta(days=int(d)) for a, d in zip(age, day_of_year, strict=True)
    ]
    pay_draw = rng.keyed(seed, _S_PAYDAY, ids)
    monthly_days = np.array([1, 5, 10, 15, 20, 25], dtype=np.uint64)
    payday = np.where(
        segment == 1,
        (pay_draw % np.uint64(5)).astype(np.int64),  # weekly: Monday–Friday
        monthly_days[(pay_draw % np.uint64(len(monthly_days))).astype(np.int64)].astype(np.int64),
    )
    payday = np.where(segment == 2, 1, payday)  # allowances on the 1st
    spend_share = np.clip(0.55 + 0.10 * rng.normal(seed, _S_SPEND, ids) + 0.08 * risk, 0.25, 0.95)
    purchases = np.array([s.purchases_per_month for s in seg])[segment] * np.exp(
        0.35 * rng.normal(seed, _S_SPEND + 50, ids)
    )
    base = np.array([c[2] for c in CATEGORIES])
    gamma = np.stack([-np.log1p(-rng.uniform(seed, S_CATEGORY + k, ids)) for k in range(len(CATEGORIES))], axis=1)
    weights = 0.6 * base[None, :] + 0.4 * gamma / gamma.sum(axis=1, keepdims=True)
    has_bill = np.stack(
        [rng.uniform(seed, _S_BILLS + 10 * k, ids) < p for k, p in enumerate((0.97, 0.95, 0.7, 0.55))], axis=1
    )
    scale = (income / 7_000.0) ** 0.3
    amounts = np.stack(
        [
            np.rint((lo + (hi - lo) * rng.uniform(seed, _S_BILLS + 10 * k + 1, ids)) * scale * 100)
            for k, (_, (lo, hi), _, _) in enumerate(BILLERS)
        ],
        axis=1,
    ).astype(np.int64)
    founding = u(_S_JOIN) < FOUNDING_SHARE
    join_day = np.where(founding, 0, 1 + (rng.keyed(seed, _S_JOIN + 50, ids) % np.uint64(JOIN_SPREAD_DAYS)))
    appetite = np.clip(0.035 * np.exp(0.45 * risk) * np.where(segment == 2, 0.6, 1.0), 0.005, 0.25)
    transactor = u(_S_TRANSACTOR) < _sigmoid(0.4 - 1.1 * risk)
    line_use = np.clip(0.35 + 0.2 * risk + 0.1 * rng.normal(seed, _S_LINE_USE, ids), 0.05, 0.9)

    shock = np.zeros((size, months), dtype=np.int8)
    default_month = np.full(size, months, dtype=np.int64)
    job_hazard = np.array([s.job_loss_hazard for s in seg])[segment] * np.exp(0.4 * risk)
    left = np.zeros(size, dtype=np.int64)
    kind = np.zeros(size, dtype=np.int8)
    for m in range(months):
        left = np.maximum(left - 1, 0)
        kind = np.where(left > 0, kind, 0).astype(np.int8)
        free = left == 0
        job = free & (rng.uniform(seed, S_JOB_LOSS, ids, m) < job_hazard)
        ill = free & ~job & (rng.uniform(seed, S_ILLNESS, ids, m) < ILLNESS_HAZARD)
        job_len = 2 + (rng.keyed(seed, S_JOB_LEN, ids, m) % np.uint64(5)).astype(np.int64)
        ill_len = 1 + (rng.keyed(seed, S_ILL_LEN, ids, m) % np.uint64(3)).astype(np.int64)
        left = np.where(job, job_len, np.where(ill, ill_len, left))
        kind = np.where(job, 1, np.where(ill, 2, kind)).astype(np.int8)
        shock[:, m] = kind
        hazard = DEFAULT_HAZARD * np.exp(RISK_SLOPE * risk) * np.where(kind > 0, SHOCK_MULTIPLIER, 1.0)
        starts = (default_month == months) & (rng.uniform(seed, S_DEFAULT, ids, m) < hazard)
        default_month = np.where(starts, m, default_month)
    return Population(
        seed=seed,
        size=size,
        start=start,
        segment=segment,
        income_monthly_minor=income_minor,
        risk=risk,
        female=female,
        birth=birth,
        payday=payday.astype(np.int64),
        spend_share=spend_share,
        purchases_per_month=purchases,
        category_weights=weights,
        bills=has_bill,
        bill_amount_minor=amounts,
        join_day=join_day.astype(np.int64),
        credit_appetite=appetite,
        transactor=transactor,
        line_use=line_use,
        months=months,
        shock=shock,
        default_month=default_month,
    )

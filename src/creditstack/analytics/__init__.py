"""Analytics: pure portfolio arithmetic on plain rows (no I/O), used by lending, console, bureau, supervisor.

`portfolio` holds DPD buckets and their distribution, vintage curves and roll rates from account-month
snapshots, concentration (HHI on 0–10,000, CR-n, grouping by a key), IFRS 9 stages and expected credit
loss, and China's five-tier loan classification. Amounts are integer minor units; rates are Decimals.
Error code: `analytics.input_invalid`. See README.md.
"""

from __future__ import annotations

from creditstack.analytics.errors import AnalyticsInputInvalid
from creditstack.analytics.portfolio import (
    DPD_BOUNDARIES_DEFAULT,
    BucketRow,
    Concentration,
    ConcentrationRow,
    Ifrs9Stage,
    LoanTier,
    RollRateRow,
    RollRates,
    VintagePoint,
    bucket_distribution,
    bucket_labels,
    china_five_tier,
    concentration_by,
    cr_n,
    dpd_bucket,
    dpd_bucket_index,
    expected_credit_loss,
    hhi,
    ifrs9_stage,
    month_index,
    month_label,
    ratio,
    roll_rates,
    vintage_curves,
)

__all__ = [
    "DPD_BOUNDARIES_DEFAULT",
    "AnalyticsInputInvalid",
    "BucketRow",
    "Concentration",
    "ConcentrationRow",
    "Ifrs9Stage",
    "LoanTier",
    "RollRateRow",
    "RollRates",
    "VintagePoint",
    "bucket_distribution",
    "bucket_labels",
    "china_five_tier",
    "concentration_by",
    "cr_n",
    "dpd_bucket",
    "dpd_bucket_index",
    "expected_credit_loss",
    "hhi",
    "ifrs9_stage",
    "month_index",
    "month_label",
    "ratio",
    "roll_rates",
    "vintage_curves",
]

"""Lending: the revolving credit line and the instalment cash loan.

The pure financial mathematics lives in `daycount` (ACT/365F, ACT/360, 30/360), `calendar` (business days,
rolling, month arithmetic with clamping), `schedule` (instalment schedules, daily accrual that sums to the
scheduled interest, prepayment, payoff quotes) and `apr` (Regulation Z Appendix J actuarial APR); their
error codes, all `lending.*`, are in `math_errors`.
"""

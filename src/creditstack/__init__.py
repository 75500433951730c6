"""creditstack: digital consumer finance for people without collateral.

Three services share this distribution: the platform (ledger, payments, lending, co-lending, scoring),
the credit bureau and the supervisor. See DESIGN in the repository and each context's README.
"""

__version__ = "0.1.0"

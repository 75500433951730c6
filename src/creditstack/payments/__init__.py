"""Payments: wallets, transfers, merchant payments, refunds, bills, rails, and bank-statement reconciliation."""

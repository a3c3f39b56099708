"""Inbound webhook signature schemes (GitHub, Stripe, Standard Webhooks)."""

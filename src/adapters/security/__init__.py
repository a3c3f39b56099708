"""Secrets: API key hashing and per-run encryption keys."""

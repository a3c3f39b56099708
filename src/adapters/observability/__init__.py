"""Observability adapters: Prometheus metrics."""

"""Adapters: the technology behind each domain port."""

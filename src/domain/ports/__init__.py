"""Ports: the Protocols the use cases depend on. Adapters implement them."""

"""The domain: entities, the event reducer, ports and use cases. No frameworks here."""

"""Use cases: one module each, depending on ports only."""

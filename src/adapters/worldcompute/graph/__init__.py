"""Workflow Studio graphs: the format, parsed and checked once (``format``), and the
interpreter that runs a graph as a durable workflow (``interpreter``)."""

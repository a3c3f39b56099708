"""Workflow execution, one job per sub-package (import-linter keeps the layering):

- ``engine`` — the workflow engine: claims workflow messages, leases runs, hands each
  to a backend, recovers runs whose worker died;
- ``local`` / ``process`` — the two backends (in the server's process; in child
  processes with limits), independent of each other;
- ``bundles`` — a deployment's bundle as code: the one importer, the upload check in a
  limited child, the code unpacked for execution;
- ``graph`` — Workflow Studio graphs: the format, parsed and checked once, and the
  interpreter;
- ``runtime`` — what both backends share: a run made durable, driving it, failures.

The authoring API that bundles import is ``domain.authoring``.
"""

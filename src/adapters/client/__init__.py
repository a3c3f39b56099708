"""The Python client of the public API (sync and async, on httpx). Public surface:
``compute_worker.client``. It imports nothing of the server (no ``domain``, ``app``
or other adapters), so that it stays a thin, separate piece."""

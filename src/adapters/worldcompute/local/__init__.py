"""The ``local`` backend: workflows run in the server's own process, over the World of
the server's use cases (``world``)."""

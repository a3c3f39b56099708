"""Filesystem adapters: the content-addressed artifact store for deployment bundles."""

"""Composition: settings, the container, the runtime, the server and the CLI."""

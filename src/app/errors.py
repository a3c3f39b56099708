"""What stops compute-worker from starting, with the exit code the CLI gives it.

Every message is one line saying what is wrong and what to do; the CLI prints it
as ``compute-worker: <message>`` and exits with ``exit_code``.
"""

from __future__ import annotations


class StartupError(RuntimeError):
    """The environment refused to start (database unreachable, port taken, data
    directory unwritable, TLS files unreadable): exit code 3."""

    exit_code = 3


class SettingsError(StartupError, ValueError):
    """A setting (option, environment variable or flag) has a value that cannot be
    used; the message names it: exit code 2."""

    exit_code = 2

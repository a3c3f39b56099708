"""Driver failures translated to port-level errors."""

from __future__ import annotations

from sqlalchemy import exc

from compute_worker.domain import errors


class WriteConflict(errors.StorageUnavailable):
    """A concurrent transaction made this one fail (PostgreSQL chose it as a deadlock's
    victim, or a serialization failure): nothing was written, running it again is safe."""


TRANSIENT = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def translate(error: Exception) -> Exception:
    """The domain error a database failure means to a caller, or the error itself."""
    if isinstance(error, errors.DomainError):
        return error
    if _sqlstate(error) in TRANSIENT:
        return WriteConflict("The write collided with a concurrent one; retry shortly")
    if isinstance(error, exc.IntegrityError):
        return errors.EntityConflict("The write conflicts with existing data")
    if isinstance(error, exc.DataError) or _sqlstate(error).startswith(DATA_EXCEPTION):
        # e.g. a text longer than its column (PostgreSQL enforces lengths, SQLite does not)
        return errors.InvalidRequest("A value is too long or out of range to be stored")
    if _sqlstate(error).startswith(UNAVAILABLE):
        return errors.StorageUnavailable("The database is unavailable or busy; retry shortly")
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return errors.StorageUnavailable("The database is unavailable or busy; retry shortly")
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return errors.StorageUnavailable("The database connection was lost; retry shortly")
    if isinstance(error, OSError | ConnectionError):
        return errors.StorageUnavailable("The database is unreachable; retry shortly")
    return error


DATA_EXCEPTION = "22"  # SQLSTATE class: the value does not fit its column
# SQLSTATE prefixes of a server that cannot serve now (asyncpg raises some of them as a
# plain driver error): connection exceptions, insufficient resources (disk full, too many
# connections), and shutting down, crashed or still starting up (57P01-57P03)
UNAVAILABLE = ("08", "53", "57P01", "57P02", "57P03")


def _sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a driver error, however deep SQLAlchemy's adapters wrapped it."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str):
            return state
        seen = getattr(seen, "orig", None) or seen.__cause__
    return ""

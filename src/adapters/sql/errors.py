"""Driver failures translated to port-level errors."""

from __future__ import annotations

from sqlalchemy import exc

from domain import errors


def translate(error: Exception) -> Exception:
    """The domain error a database failure means to a caller, or the error itself."""
    if isinstance(error, errors.DomainError):
        return error
    if isinstance(error, exc.IntegrityError):
        return errors.EntityConflict("The write conflicts with existing data")
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return errors.StorageUnavailable("The database is unavailable or busy; retry shortly")
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return errors.StorageUnavailable("The database connection was lost; retry shortly")
    if isinstance(error, OSError | ConnectionError):
        return errors.StorageUnavailable("The database is unreachable; retry shortly")
    return error

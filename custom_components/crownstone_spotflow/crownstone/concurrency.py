"""Running requests side by side without leaving orphans behind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def first_error() -> Iterator[None]:
    """Raise the first failure of an asyncio.TaskGroup itself, not wrapped in an ExceptionGroup.

    A TaskGroup (unlike gather) cancels the siblings of a failed request, so no request keeps
    running after the caller got its error; callers expect the library's own exceptions.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from error.__cause__

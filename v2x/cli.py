"""What the command-line apps share: user errors as one line, Ctrl-C as one line.

A user error (a ``ValueError`` or ``FileNotFoundError`` from validating the config or reading
inputs: every message names the field, the value and the valid choices) is printed as a single
``error: …`` line on stderr and the app exits with status 2, without a traceback. Set
``V2X_TRACEBACK=1`` to get the traceback instead. Ctrl-C prints one line (a sweep says what was
saved and how to resume) and exits with status 130.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variable that shows the traceback of user errors.
TRACEBACK_ENV = "V2X_TRACEBACK"


def traceback_wanted() -> bool:
    """Whether ``V2X_TRACEBACK`` asks for tracebacks (any value but empty, 0, false, no)."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def user_errors(fn: F) -> F:
    """Wrap an app's main function: user errors and Ctrl-C become one line and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            if traceback_wanted():
                raise
            print(str(exc) or "interrupted (nothing to save yet)", file=sys.stderr)
            sys.exit(130)
        except (ValueError, FileNotFoundError) as exc:
            if traceback_wanted():
                raise
            print(f"error: {exc} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]

"""One place where every command's errors become a one-line message and an exit code.

Exit code 2: bad input (a flag, a file, a task or a study folder the user named); 1: a failure while working
(a file that cannot be written, a corrupt journal, an export that does not reproduce). ``--debug`` or
``AUTOSLIM_DEBUG=1`` prints the traceback first. Messages are printed literally: user text such as
``float must be [low, high]`` or ``pip install 'autoslim[ray]'`` keeps its brackets (no rich markup).
"""

from __future__ import annotations

import os
import traceback
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

BAD_INPUT: tuple[type[BaseException], ...] = (
    ValueError,  # SpaceError, ProfileError, StudyMismatchError, UnsafePathError, a malformed number or file
    TypeError,  # a task that returns something other than a Task
    ImportError,  # a task module that does not import (also the missing Ray extra)
)  # input paths are checked where they are parsed, so an OSError later is a failure (a full disk, a folder in the way)
DEBUG_KEY = "autoslim_debug"


def debug_enabled(ctx: typer.Context | None = None) -> bool:
    if ctx is not None and ctx.find_root().meta.get(DEBUG_KEY):
        return True
    return os.environ.get("AUTOSLIM_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def exit_code(exc: BaseException) -> int:
    """An exception may carry its own ``exit_code``; otherwise bad input is 2 and any other failure 1."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, OSError):
        return 1
    return 2 if isinstance(exc, BAD_INPUT) else 1


def one_line(exc: BaseException) -> str:
    """The message on one line. Our own errors already name the input; foreign ones get their type name."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{exc.strerror}"
    else:
        text = str(exc).strip() or type(exc).__name__
        if type(exc).__module__.split(".")[0] != "autoslim" and not isinstance(exc, BAD_INPUT):
            text = f"{type(exc).__name__}: {text}"
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def print_error(message: str) -> None:
    # typer.echo, not rich: no markup is interpreted, no wrapping at 80 columns, colour only on a terminal.
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {message}", err=True)


def print_warning(message: str) -> None:
    typer.echo(f"{typer.style('warning:', fg='yellow', bold=True)} {message}", err=True)


def report(exc: BaseException, ctx: typer.Context | None = None, *, context: str = "") -> int:
    """Print ``exc`` (with its traceback under --debug) and return the exit code it deserves."""
    code = exit_code(exc)
    if debug_enabled(ctx):
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    ours = type(exc).__module__.split(".")[0] == "autoslim"
    hint = "" if code == 2 or ours or debug_enabled(ctx) else " (rerun with --debug for the traceback)"
    print_error(f"{context}{one_line(exc)}{hint}")
    return code


class AutoslimGroup(TyperGroup):
    """The top-level group: wraps every (sub)command so nothing leaves as a traceback."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's vendored click Context, which it does not export
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException, SystemExit):
            raise  # Typer's own exits and usage errors (exit code 2, with the flag named) stay as they are
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            raise typer.Exit(report(exc, ctx)) from None


def set_debug(ctx: typer.Context, debug: bool) -> None:
    ctx.find_root().meta[DEBUG_KEY] = debug

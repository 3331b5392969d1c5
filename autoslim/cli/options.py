"""Flag checks shared by the commands: Typer's ``min=`` covers integer floors; these cover the rest."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import typer

from autoslim.safe_io import UnsafePathError, check_plain_name


def above_zero(value: float | None) -> float | None:
    """A float that must be > 0 (``min=0`` would let 0 through)."""
    if value is not None and not value > 0:  # `not >` also refuses nan
        raise typer.BadParameter(f"must be > 0, got {value}")
    return value


def at_least_zero(value: float | None) -> float | None:
    if value is not None and not value >= 0:
        raise typer.BadParameter(f"must be >= 0, got {value}")
    return value


def one_of(choices: Sequence[str]) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def plain_name(value: str) -> str:
    """A study or profile name: one folder/file level, so it can never point outside its folder."""
    try:
        return check_plain_name(value, what="name")
    except UnsafePathError as exc:
        raise typer.BadParameter(str(exc)) from None

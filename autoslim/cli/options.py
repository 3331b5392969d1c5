"""Flag types and checks shared by the commands: fixed choices as Enums (Typer lists them in --help and refuses
others with the flag named), ``--space NAME|FILE``, and the number checks Typer's ``min=`` does not cover."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from autoslim.safe_io import UnsafePathError, check_plain_name
from autoslim.search.space import default_space_path
from autoslim.search.time_budget import parse_duration


class Sampler(str, Enum):  # autoslim.search.study.SAMPLERS (a test keeps the two equal)
    auto = "auto"
    tpe = "tpe"
    nsga2 = "nsga2"
    gp = "gp"
    random = "random"


class ExecutorKind(str, Enum):  # autoslim.search.driver._make_executor
    inline = "inline"
    process = "process"
    ray = "ray"


class Format(str, Enum):  # autoslim.export.FORMATS
    onnx = "onnx"
    onnx_int8 = "onnx-int8"
    torchscript = "torchscript"
    state_dict = "state-dict"


NO_LIMIT = "no limit"  # the shown default of a limit that is off unless given


def above_zero(value: float | None) -> float | None:
    """A float that must be > 0 (``min=0`` would let 0 through)."""
    if value is not None and not value > 0:  # `not >` also refuses nan
        raise typer.BadParameter(f"must be > 0, got {value}")
    return value


def duration_option(value: str | None) -> str | None:
    """A duration like 8h, 10m, 1h30m (checked here so a typo fails before the teacher trains)."""
    if value is not None:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    return value


def at_least_zero(value: float | None) -> float | None:
    if value is not None and not value >= 0:
        raise typer.BadParameter(f"must be >= 0, got {value}")
    return value


def plain_name(value: str) -> str:
    """A study or profile name: one folder/file level, so it can never point outside its folder."""
    try:
        return check_plain_name(value, what="name")
    except UnsafePathError as exc:
        raise typer.BadParameter(str(exc)) from None


def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in default_space_path().parent.glob("*.yaml"))


def resolve_space(value: str) -> Path:
    """A space file path, or a shipped space's name with or without ``.yaml`` (``constrained``, as `spaces show`)."""
    path = Path(value)
    if path.is_dir():
        raise UnsafePathError(f"{value} is a directory, not a search space YAML file")
    if path.is_file():
        return path
    shipped = default_space_path().parent / (value if value.endswith((".yaml", ".yml")) else f"{value}.yaml")
    if "/" not in value and shipped.is_file():
        return shipped
    raise UnsafePathError(f"no search space {value!r}: not a file, nor a shipped space ({', '.join(shipped_spaces())})")


def space_option(value: str | None) -> str | None:
    """Typer callback of ``--space``: refused with the flag named (exit code 2) before anything runs."""
    if value is None:
        return None
    try:
        return str(resolve_space(value))
    except UnsafePathError as exc:
        raise typer.BadParameter(str(exc)) from None


SpaceOption = Annotated[
    str | None,
    typer.Option(callback=space_option, metavar="NAME|FILE", show_default="the shipped default.yaml",
                 help="A search space: a shipped name (`autoslim spaces list`: default, cnn, ...) or a YAML file."),
]  # fmt: skip
ProfilesOption = Annotated[
    list[str] | None,
    typer.Option(help="Profile name or YAML path; repeat for several.", show_default="the space's profiles",
                 metavar="NAME|FILE"),
]  # fmt: skip
TaskOption = Annotated[
    str, typer.Option(help="Built-in task name or 'module:attr' (imported from the current directory too).")
]

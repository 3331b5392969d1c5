"""A study folder's ``study.journal``, checked before Optuna opens it.

Optuna appends one JSON line per operation. A kill or a full disk during a write leaves a torn last line (and a
stray newline leaves a blank one); Optuna then fails on the next read with a bare ``JSONDecodeError`` that names
neither the file nor the line. ``check_journal`` finds that first:

* a torn or blank tail (after the last good line) is harmless to drop, since the operation it began never
  happened as far as any reader knew: the file is backed up to ``study.journal.bak-<time>``, rewritten without the
  tail, and a warning naming the file is returned;
* anything else (a bad line in the middle, an unknown op code) is real corruption: ``JournalCorruptError`` names
  the file and the line, and nothing is changed.

``check_one_study`` then enforces "a folder holds exactly one study, the one named like the folder": a copied or
renamed folder (its journal names another study) is refused instead of silently forking it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import optuna

# Optuna keeps its op codes in a private module; the numbers are part of the journal's on-disk format.
from optuna.storages.journal._storage import JournalOperation

JOURNAL_NAME = "study.journal"
_KNOWN_OPS = {int(op) for op in JournalOperation}


class JournalCorruptError(ValueError):
    """A journal line that is neither a known operation nor a droppable torn tail; the message names file + line."""

    exit_code = 2


class StudyFolderError(ValueError):
    """The folder's journal does not hold exactly the one study it is named for."""

    exit_code = 2


def _problem(line: bytes) -> str | None:
    """Why ``line`` is not a journal operation (None: it is one)."""
    try:
        log = json.loads(line)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(log, dict) or not isinstance(log.get("op_code"), int):
        return "not an operation (no integer op_code)"
    if log["op_code"] not in _KNOWN_OPS:
        return f"unknown op code {log['op_code']}"
    return None


def check_journal(path: Path, *, repair: bool = True) -> str | None:
    """Raise ``JournalCorruptError`` for corruption; drop a torn/blank tail (when ``repair``) and say so."""
    if not path.exists():
        return None
    data = path.read_bytes()
    lines = data.split(b"\n")  # the last item is what follows the final newline: b"" in a clean file
    good_end, tail_bad, bad_text = 0, 0, ""  # byte offset after the last good line; bad lines after it
    offset = 0
    for number, line in enumerate(lines, start=1):
        end = offset + len(line) + (1 if number < len(lines) else 0)
        blank = not line.strip()
        why = None if blank else _problem(line)
        if why is None and not blank and number == len(lines):
            why = "no newline at its end (a write cut short)"  # Optuna ignores such a line, then appends to it
        if not blank and why is None:
            if tail_bad:  # a bad line followed by a good one: not a torn write, the middle is damaged
                raise JournalCorruptError(f"{path}: line {tail_bad}: {bad_text}; the journal is damaged in the "
                                          "middle: restore it from a backup, or move the folder aside")  # fmt: skip
            good_end = end
        elif why is not None:
            if why.startswith("unknown op code") or why.startswith("not an operation") or tail_bad:
                # A whole, parseable line is no torn write; two bad lines are not one interrupted write.
                raise JournalCorruptError(f"{path}: line {number}: {why}; restore the journal from a backup, "
                                          "or move the folder aside and start a new study")  # fmt: skip
            tail_bad, bad_text = number, why
        offset = end
    if good_end == len(data):
        return None
    dropped = data[good_end:]
    if not repair:
        return f"{path}: ignoring a torn or blank last line"
    backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.repair.tmp")
    with open(tmp, "wb") as f:
        f.write(data[:good_end])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    what = "a blank last line" if not dropped.strip() else "a torn last line (an interrupted write)"
    return f"warning: {path}: dropped {what} of {len(dropped)} byte(s); the original is kept as {backup.name}"


def check_one_study(storage: optuna.storages.BaseStorage, name: str, where: Path) -> bool:
    """True when the study ``name`` exists; False when the journal is empty. Raises for a copied folder or a
    journal holding several studies."""
    names = optuna.get_all_study_names(storage)
    if not names:
        return False
    if len(names) > 1:
        raise StudyFolderError(
            f"{where} holds {len(names)} studies ({', '.join(repr(n) for n in names)}); a study folder holds "
            "exactly one. It was probably copied and resumed under a new name: keep it aside and start a new "
            "--study (or split it with optuna.copy_study)"
        )
    if names[0] != name:
        raise StudyFolderError(
            f"{where} holds study {names[0]!r}, not {name!r}: the folder was copied or renamed. Name the folder "
            f"{names[0]!r} again to resume that study, or start a new --study in an empty folder "
            "(--warm-start FOLDER begins it from this one's fronts)"
        )
    return True

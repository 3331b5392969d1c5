"""Safe writes into folders that may have come from someone else (a study folder sent by a colleague).

A study folder is data: whatever it holds must not make autoslim write elsewhere on the machine. So every file
autoslim writes there is written to a temporary file in the same folder and renamed over the target
(``os.replace`` replaces a name, it never follows it), a target that is a symlink is refused with a message, and
the target must lie inside the folder it is meant for::

    from autoslim.safe_io import safe_write_text, study_folder

    folder = study_folder(Path("results"), "nightly")      # refuses "../x", "", ".hidden", "a/b"
    safe_write_text(folder / "report.html", html, root=folder)

The rename also makes each write atomic: a reader (or a crash) sees the old file or the new one, never half.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Letters, digits, '.', '_', '-' and '+'; no separator, so a name is one folder level and never climbs out.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]*")


class UnsafePathError(ValueError):
    """A path would make autoslim write outside the folder it is meant for, or through a symlink."""


def check_plain_name(name: str, *, what: str = "study name") -> str:
    """``name`` itself when it is one plain folder or file name: not empty, no separator, no leading dot."""
    if not name or not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise UnsafePathError(
            f"{what} {name!r} is not a plain name: use letters, digits, '.', '_', '-' or '+' "
            "(not empty, no '/' or '\\', no leading '.')"
        )
    return name


def check_inside(path: str | Path, root: str | Path) -> Path:
    """``path`` when it lies inside ``root`` (after resolving every symlink above it) and is not itself a symlink."""
    path, root = Path(path), Path(root)
    if path.is_symlink():
        raise UnsafePathError(f"{path} is a symlink; autoslim does not write through symlinks. Remove it and rerun")
    real_root = root.resolve()
    real_parent = path.parent.resolve()
    if real_parent != real_root and real_root not in real_parent.parents:
        raise UnsafePathError(f"{path} lies outside {root}; autoslim only writes inside it")
    return path


def check_folder(folder: str | Path) -> Path:
    """A folder autoslim writes into: not a symlink, and not a file."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UnsafePathError(f"{folder} is a symlink; autoslim writes only into a real folder. Remove it and rerun")
    if folder.exists() and not folder.is_dir():
        raise UnsafePathError(f"{folder} is not a folder")
    return folder


def study_folder(results: str | Path, name: str) -> Path:
    """``results/name``, checked: a plain name, a real folder (not a symlink) that lies inside ``results``."""
    results = Path(results)
    check_plain_name(name)
    if results.exists() and not results.is_dir():
        raise UnsafePathError(f"--results {results} is not a folder")
    folder = check_folder(results / name)
    check_inside(folder, results)
    return folder


# What autoslim writes into a study folder; a symlink planted under any of these names is refused up front.
STUDY_FILES = ("study.journal", "trials.csv", "report.html", "preflight.csv", "pareto_*.csv", "pareto_*.png")


def check_study_files(folder: str | Path) -> Path:
    """Refuse a study folder where a file autoslim writes is a symlink (it could point anywhere)."""
    folder = check_folder(folder)
    if folder.is_dir():
        for pattern in STUDY_FILES:
            for entry in sorted(folder.glob(pattern)):
                check_inside(entry, folder)
    return folder


def check_writable_folder(folder: str | Path, *, what: str = "folder") -> Path:
    """Create ``folder`` if needed and prove it takes a file (a write probe: root ignores permission bits)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UnsafePathError(f"{what} {folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UnsafePathError(f"{what} {folder} is not writable: {exc.strerror or exc}") from None
    return folder


@contextmanager
def replacing(path: str | Path, root: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a library to write (``df.to_csv``, ``fig.savefig``, ONNX);
    on success it is renamed over ``path``; on error it is removed and ``path`` is left as it was."""
    path = Path(path)
    check_inside(path, root if root is not None else path.parent)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report should read like any file the user writes
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safe_write_bytes(path: str | Path, data: bytes, root: str | Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically, never through a symlink, only inside ``root`` (default: its folder)."""
    path = Path(path)
    with replacing(path, root) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def safe_write_text(path: str | Path, text: str, root: str | Path | None = None) -> Path:
    return safe_write_bytes(path, text.encode("utf-8"), root)

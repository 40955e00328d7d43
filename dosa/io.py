"""Atomic file writes, and early checks of output paths.

Results (``claims.json``, ``result.json``, cached data files) are read by other processes,
sometimes while they are being written. Writing to a temporary file in the same directory and
``os.replace``-ing it onto the final name means a reader sees either the old or the new
content, never a half-written file, and a crash leaves the old file intact.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "OutputPathError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
]

_DEFAULT_MODE = 0o644


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk so the rename never exposes an empty file after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort (not all platforms/filesystems allow it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on clean exit move it onto ``path`` atomically.

    The caller writes (and may verify) the temporary file inside the ``with`` block. If the
    block raises, the temporary file is removed and ``path`` is left untouched. The temporary
    file lives in the same directory so that ``os.replace`` is a same-filesystem rename.
    """
    final = Path(path)
    if make_parents:
        final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            mode = final.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = _DEFAULT_MODE
        os.chmod(tmp, mode)
        _fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - e.g. directory vanished
            logger.warning("could not remove temporary file %s: %s", tmp, exc)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (parent directories are created)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (parent directories are created)."""
    atomic_write_bytes(path, text.encode(encoding))


# --------------------------------------------------------------------------- output path checks


class OutputPathError(ValueError):
    """An output path (``--out``) cannot be written; raised before any work starts."""


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` (or ``path`` itself) that exists on disk."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")  # pragma: no cover - a relative path's parents end at "."


def _check_creatable(path: Path, option: str, what: str) -> None:
    """Fail unless the folder ``path`` exists and is writable or can be created."""
    anchor = _existing_ancestor(path)
    if not anchor.is_dir():
        raise OutputPathError(
            f"{option} {str(path)!r}: {str(anchor)!r} is a file, so no {what} can be created "
            f"under it; expected a path inside a folder")
    problem = None if os.access(anchor, os.W_OK | os.X_OK) else "permission denied"
    if problem is None:
        # os.access says yes to root even where nothing can be created (/proc, some
        # read-only mounts): creating and removing a probe file is the real test.
        try:
            fd, probe = tempfile.mkstemp(prefix=".dosa-probe.", dir=anchor)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problem = exc.strerror or str(exc)
    if problem is not None:
        raise OutputPathError(
            f"{option} {str(path)!r}: folder {str(anchor)!r} is not writable ({problem}); "
            f"expected a path in a writable folder")


def check_output_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Check that ``path`` can become a result folder; return it as a :class:`Path`.

    Runs before a long computation so that a typo in the output path fails in milliseconds
    instead of after the work is done (or, for an empty string, silently writing into the
    current folder). Nothing is created.
    """
    if not str(path).strip():
        raise OutputPathError(f"{option} must not be empty; expected a folder path")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(
            f"{option} {str(folder)!r} is an existing file; expected a folder (new or existing)")
    _check_creatable(folder, option, "folder")
    return folder


def check_output_file(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Check that ``path`` can be (over)written as a file; return it as a :class:`Path`.

    The file version of :func:`check_output_dir`: an existing folder, a trailing path
    separator or a parent that is a file are refused before any work. Nothing is created.
    """
    text = str(path)
    if not text.strip():
        raise OutputPathError(f"{option} must not be empty; expected a file path")
    file = Path(path)
    if file.is_dir() or text.endswith(("/", os.sep)):
        raise OutputPathError(
            f"{option} {text!r} is a folder; expected a file path inside a folder")
    _check_creatable(file.parent, option, "file")
    return file

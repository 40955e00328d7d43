"""Atomic file writes.

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

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]

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

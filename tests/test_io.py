"""Atomic writes: readers never see partial files and failures keep the old content."""

from __future__ import annotations

from pathlib import Path

import pytest

from dosa.io import atomic_path, atomic_write_bytes, atomic_write_text


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_text_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    atomic_write_text(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert _leftovers(target.parent) == []


def test_atomic_write_bytes(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


def test_exception_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_text("half-writ")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_exception_without_old_file_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.json"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("x")
            raise ValueError
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_mode_of_existing_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("a")
    target.chmod(0o600)
    atomic_write_text(target, "b")
    assert target.stat().st_mode & 0o777 == 0o600

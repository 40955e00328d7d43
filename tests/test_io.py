"""Atomic writes: readers never see partial files and failures keep the old content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dosa.io import (
    OutputPathError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    check_output_file,
)


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


# --- output path checks -----------------------------------------------------------------------


def test_check_output_dir_accepts_new_and_existing_folders(tmp_path: Path) -> None:
    new = tmp_path / "a" / "b"
    assert check_output_dir(str(new)) == new
    assert not (tmp_path / "a").exists()  # checking creates nothing
    assert check_output_dir(tmp_path) == tmp_path


@pytest.mark.parametrize("kind", ["empty", "blank", "file", "under_file"])
def test_check_output_dir_refusals_name_the_option(tmp_path: Path, kind: str) -> None:
    file = tmp_path / "f.txt"
    file.write_text("x")
    path = {"empty": "", "blank": "  ", "file": str(file), "under_file": str(file / "sub")}[kind]
    with pytest.raises(OutputPathError) as info:
        check_output_dir(path, "--results")
    message = str(info.value)
    assert message.startswith("--results ") and "\n" not in message
    assert "folder" in message
    assert isinstance(info.value, ValueError)
    assert file.read_text() == "x"


def test_check_output_dir_read_only_parent(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match="--out .*not writable"):
            check_output_dir(locked / "run")
    finally:
        locked.chmod(0o755)


def test_check_output_dir_read_only_parent_by_access(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The writability check goes through os.access, so it also holds when run as root."""
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputPathError, match="--out .*not writable"):
        check_output_dir(tmp_path / "run")


def test_check_output_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.csv"
    assert check_output_file(str(target)) == target
    assert not target.parent.exists()
    file = tmp_path / "f.txt"
    file.write_text("x")
    assert check_output_file(file) == file  # overwriting a file is fine
    for bad, words in (("", "must not be empty"), (str(tmp_path), "is a folder"),
                       (str(tmp_path / "new") + "/", "is a folder"),
                       (str(file / "out.csv"), "is a file")):
        with pytest.raises(OutputPathError, match=words) as info:
            check_output_file(bad, "--csv-out")
        assert str(info.value).startswith("--csv-out ")


def test_check_output_dir_probes_where_access_says_yes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """os.access says yes to root on folders where no file can be created (e.g. /proc)."""
    import tempfile

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputPathError, match="not writable .Read-only file system."):
        check_output_dir(tmp_path / "run")
    monkeypatch.undo()
    assert check_output_dir(tmp_path / "run") == tmp_path / "run"
    assert list(tmp_path.iterdir()) == []  # the probe file is removed

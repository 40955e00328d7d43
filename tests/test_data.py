"""Fetching, verifying, caching and loading the published DOSA data (no network access).

Unit tests use small generated files and a patched registry; tests marked ``data`` use the
real published files and skip when they are not available locally.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.error
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from dosa import data
from dosa.data import (
    DataFile,
    DataIntegrityError,
    DataUnavailableError,
    available,
    load_firesim_test,
    load_firesim_training,
    load_timeloop_dataset,
    require_columns,
)

REAL_DATA_DIR = os.environ.get("DOSA_DATA_DIR")
URL = "https://example.invalid/dosa/"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _csv(rows: int, extra: str = "") -> bytes:
    lines = ["target.cycle,target.energy,mapping.mapping"]
    lines += [f"{i},{i * 0.5},L3[WIO] P{i}{extra}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def _tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


class Fake:
    """Generated stand-ins for the published files, with a registry pointing at them."""

    def __init__(self) -> None:
        self.member = _csv(30)
        self.contents: dict[str, bytes] = {
            "timeloop_dataset/dataset.csv.tar.gz": _tarball({"dataset.csv": self.member}),
            "firesim_training_data/firesim_results.csv": _csv(7),
            "firesim_test_data/dataset.csv": _csv(9),
            "firesim_test_data/analytical.csv": _csv(3, "a"),
            "firesim_test_data/both.csv": _csv(3, "b"),
            "firesim_test_data/dnn.csv": _csv(3, "d"),
        }
        self.files = {
            key: DataFile(
                key,
                real.relpath,
                URL + real.relpath,
                _sha(self.contents[real.relpath]),
                real.member,
                _sha(self.member) if real.member else None,
            )
            for key, real in data.FILES.items()
        }

    def write(self, root: Path, *relpaths: str) -> None:
        for rel in relpaths or tuple(self.contents):
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.contents[rel])


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    """Patched registry, empty DOSA_DATA_DIR and cache, and a downloader that must not run."""
    f = Fake()
    monkeypatch.setattr(data, "FILES", f.files)
    monkeypatch.setenv("DOSA_DATA_DIR", str(tmp_path / "published"))
    monkeypatch.setenv("DOSA_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "published").mkdir()

    def no_network(url: str, dest: Path) -> None:
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(data, "_download", no_network)
    return f


def _files_under(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_registry_matches_published_layout() -> None:
    assert set(data.FILES) == {
        "timeloop",
        "firesim_training",
        "firesim_test",
        "firesim_test_analytical",
        "firesim_test_both",
        "firesim_test_dnn",
    }
    for key, entry in data.FILES.items():
        assert entry.key == key
        assert entry.url == "https://github.com/ucb-bar/dosa/raw/main/data/" + entry.relpath
        assert len(entry.sha256) == 64
    assert data.FILES["timeloop"].member == "dataset.csv"
    assert data.FILES["timeloop"].member_relpath == "timeloop_dataset/dataset.csv"


def test_found_in_data_dir_writes_nothing_there(fake: Fake, tmp_path: Path) -> None:
    published = tmp_path / "published"
    fake.write(published)
    before = _files_under(published)
    assert data.path("firesim_test") == published / "firesim_test_data/dataset.csv"
    assert len(load_firesim_test()) == 9
    assert len(load_firesim_training()) == 7
    df = load_timeloop_dataset()
    assert len(df) == 30 and list(df.columns)[0] == "target.cycle"
    assert _files_under(published) == before  # the (possibly read-only) folder is untouched
    assert _files_under(tmp_path / "cache") == ["timeloop_dataset/dataset.csv"]


def test_cache_hit_without_data_dir(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOSA_DATA_DIR")
    fake.write(tmp_path / "cache", "firesim_training_data/firesim_results.csv")
    assert available("firesim_training")
    assert (
        data.path("firesim_training")
        == tmp_path / "cache/firesim_training_data/firesim_results.csv"
    )
    assert len(load_firesim_training()) == 7


def test_data_dir_missing_file_falls_back_to_cache(fake: Fake, tmp_path: Path) -> None:
    fake.write(tmp_path / "cache", "firesim_test_data/dnn.csv")
    assert len(load_firesim_test("dnn")) == 3


@pytest.mark.parametrize("where", ["published", "cache"])
def test_corrupted_file_refused(fake: Fake, tmp_path: Path, where: str) -> None:
    rel = "firesim_test_data/dataset.csv"
    fake.write(tmp_path / where, rel)
    (tmp_path / where / rel).write_bytes(b"target.cycle\n1\n")
    expected = fake.files["firesim_test"].sha256
    actual = _sha(b"target.cycle\n1\n")
    with pytest.raises(DataIntegrityError) as exc:
        load_firesim_test()
    msg = str(exc.value)
    assert rel in msg and expected in msg and actual in msg
    assert not available("firesim_test")


def test_verification_is_memoised(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.write(tmp_path / "published", "firesim_test_data/both.csv")
    calls: list[Path] = []
    real = data._sha256_file

    def counting(p: Path) -> str:
        calls.append(p)
        return real(p)

    monkeypatch.setattr(data, "_sha256_file", counting)
    for _ in range(3):
        data.path("firesim_test_both")
    assert len(calls) == 1
    target = tmp_path / "published/firesim_test_data/both.csv"
    target.write_bytes(target.read_bytes() + b"9,9,x\n")  # changed size -> re-hashed, refused
    with pytest.raises(DataIntegrityError):
        data.path("firesim_test_both")
    assert len(calls) == 2


def test_offline_without_copy(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dest: Path) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataUnavailableError) as exc:
        load_firesim_training()
    msg = str(exc.value)
    assert isinstance(exc.value, RuntimeError)
    assert "'firesim_training'" in msg
    assert URL + "firesim_training_data/firesim_results.csv" in msg
    assert "DOSA_DATA_DIR" in msg
    assert not available("firesim_training")


def test_available_never_downloads(fake: Fake, tmp_path: Path) -> None:
    assert not available("timeloop")  # the fixture's downloader would raise if called
    fake.write(tmp_path / "published", "timeloop_dataset/dataset.csv.tar.gz")
    assert available("timeloop")
    assert _files_under(tmp_path / "cache") == []  # nor unpacks


def test_download_is_atomic_and_verified(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rel = "firesim_test_data/analytical.csv"
    final = tmp_path / "cache" / rel
    seen: list[Path] = []

    def downloader(url: str, dest: Path) -> None:
        assert url == URL + rel
        assert dest.parent == final.parent and dest != final
        assert not final.exists()
        seen.append(dest)
        dest.write_bytes(fake.contents[rel])

    monkeypatch.setattr(data, "_download", downloader)
    df = load_firesim_test("analytical")
    assert len(df) == 3
    assert final.read_bytes() == fake.contents[rel]
    assert not seen[0].exists()
    assert _files_under(tmp_path / "cache") == [rel]
    # second load is a cache hit (the downloader would fail the seen-count check)
    load_firesim_test("analytical")
    assert len(seen) == 1


def test_corrupt_download_discarded(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "_download", lambda url, dest: dest.write_bytes(b"<html>"))
    with pytest.raises(DataIntegrityError, match=fake.files["firesim_test"].sha256):
        load_firesim_test()
    assert _files_under(tmp_path / "cache") == []


def test_interrupted_download_leaves_nothing(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def partial(url: str, dest: Path) -> None:
        dest.write_bytes(b"target.cycle,")
        raise TimeoutError("read timed out")

    monkeypatch.setattr(data, "_download", partial)
    with pytest.raises(DataUnavailableError, match="TimeoutError"):
        load_firesim_test()
    assert _files_under(tmp_path / "cache") == []


def test_tarball_downloaded_and_unpacked(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOSA_DATA_DIR")
    rel = "timeloop_dataset/dataset.csv.tar.gz"
    monkeypatch.setattr(data, "_download", lambda url, dest: dest.write_bytes(fake.contents[rel]))
    p = data.path("timeloop")
    assert p == tmp_path / "cache/timeloop_dataset/dataset.csv"
    assert p.read_bytes() == fake.member
    assert _files_under(tmp_path / "cache") == [
        "timeloop_dataset/dataset.csv",
        "timeloop_dataset/dataset.csv.tar.gz",
    ]


def test_tarball_member_verified(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_member = _tarball({"dataset.csv": b"target.cycle\n1\n"})
    entry = fake.files["timeloop"]
    monkeypatch.setitem(
        data.FILES,
        "timeloop",
        replace(entry, sha256=_sha(bad_member)),
    )
    archive = tmp_path / "published" / entry.relpath
    archive.parent.mkdir(parents=True)
    archive.write_bytes(bad_member)
    with pytest.raises(DataIntegrityError, match=str(entry.member_sha256)):
        load_timeloop_dataset()
    assert _files_under(tmp_path / "cache") == []


def test_tarball_only_expected_member_extracted(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = _tarball({"../../escape.csv": b"x", "/abs.csv": b"y", "dataset.csv": fake.member})
    entry = fake.files["timeloop"]
    monkeypatch.setitem(
        data.FILES,
        "timeloop",
        replace(entry, sha256=_sha(evil)),
    )
    archive = tmp_path / "published" / entry.relpath
    archive.parent.mkdir(parents=True)
    archive.write_bytes(evil)
    assert len(load_timeloop_dataset()) == 30
    assert _files_under(tmp_path / "cache") == ["timeloop_dataset/dataset.csv"]
    assert not (tmp_path / "escape.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "published"]


def test_tarball_missing_member(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = _tarball({"other.csv": fake.member})
    entry = fake.files["timeloop"]
    monkeypatch.setitem(
        data.FILES,
        "timeloop",
        replace(entry, sha256=_sha(wrong)),
    )
    archive = tmp_path / "published" / entry.relpath
    archive.parent.mkdir(parents=True)
    archive.write_bytes(wrong)
    with pytest.raises(DataIntegrityError, match="no member 'dataset.csv'"):
        data.path("timeloop")


def test_timeloop_load_is_memoised_copy(fake: Fake, tmp_path: Path) -> None:
    fake.write(tmp_path / "published", "timeloop_dataset/dataset.csv.tar.gz")
    df = load_timeloop_dataset()
    df["target.cycle"] = -1
    again = load_timeloop_dataset()
    assert (again["target.cycle"] >= 0).all()


def test_bad_predictor_name(fake: Fake) -> None:
    with pytest.raises(ValueError, match="'analytical', 'both', 'dnn'"):
        load_firesim_test("DNN-only")


def test_predictor_selects_file(fake: Fake, tmp_path: Path) -> None:
    fake.write(tmp_path / "published")
    for name, suffix in (("analytical", "a"), ("both", "b"), ("dnn", "d")):
        df = load_firesim_test(name)
        assert df["mapping.mapping"].str.endswith(suffix).all()


def test_unknown_key(fake: Fake) -> None:
    with pytest.raises(KeyError, match="nope"):
        data.path("nope")


def test_require_columns() -> None:
    df = pd.DataFrame({"a": [1], "b": [2]})
    require_columns(df, ["a", "b"], "x.csv")
    with pytest.raises(ValueError, match=r"user\.csv.*'c'.*'d'"):
        require_columns(df, ["a", "c", "d"], "user.csv")


# --------------------------------------------------------------------------- real data


@pytest.fixture
def real_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the real registry and DOSA_DATA_DIR, but a throwaway cache for unpacking."""
    if REAL_DATA_DIR:
        monkeypatch.setenv("DOSA_DATA_DIR", REAL_DATA_DIR)
    if os.environ.get("DOSA_DATA_DIR"):
        monkeypatch.setenv("DOSA_CACHE_DIR", str(tmp_path / "cache"))


def _skip_unless(key: str) -> None:
    if not available(key):
        pytest.skip(
            f"published DOSA file {key!r} not available locally; "
            "set DOSA_DATA_DIR to a folder holding the published data (e.g. ../shared/dosa-data)"
        )


@pytest.mark.data
def test_real_firesim_test(real_data: None) -> None:
    _skip_unless("firesim_test")
    df = load_firesim_test()
    assert len(df) == 222
    require_columns(df, ["target.gemmini_cycle", "mapping.mapping"], "firesim_test")
    for name in data.FIRESIM_TEST_PREDICTORS:
        _skip_unless(f"firesim_test_{name}")
        assert len(load_firesim_test(name)) == 74


@pytest.mark.data
def test_real_firesim_training(real_data: None) -> None:
    _skip_unless("firesim_training")
    assert len(load_firesim_training()) == 1567


@pytest.mark.data
def test_real_timeloop(real_data: None) -> None:
    _skip_unless("timeloop")
    df = load_timeloop_dataset()
    assert df.shape == (72700, 39)
    require_columns(df, ["target.cycle", "target.energy", "mapping.mapping"], "timeloop")


def test_timeloop_vectors_location_and_refusals(tmp_path, monkeypatch) -> None:
    """DOSA_VECTORS_DIR wins; otherwise timeloop-vectors beside DOSA_DATA_DIR; a clear error
    naming both variables when absent; unknown names list the allowed ones."""
    monkeypatch.delenv(data.VECTORS_DIR_ENV, raising=False)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "dosa-data"))
    assert data.vectors_dir() is None
    with pytest.raises(data.DataUnavailableError, match="DOSA_VECTORS_DIR"):
        data.load_timeloop_vectors("targeted")
    with pytest.raises(data.UnknownDataFileError, match="search_designs, targeted"):
        data.load_timeloop_vectors("other")
    beside = tmp_path / "timeloop-vectors"
    beside.mkdir()
    (beside / "search_designs.csv").write_text(
        "R,S,P,Q,C,K,N,Wstride,Hstride,pe_dim,sp_kb,acc_kb,mapping,timeloop_cycles,"
        "timeloop_energy_uj\n1,1,4,1,2,2,1,1,1,2,1,1,"
        "L3[WIO] P4 - L2[WI] N1 K2X - L1[O] N1 C2X - L0[W] N1,10,0.5\n")
    assert data.vectors_dir() == beside
    frame = data.load_timeloop_vectors("search_designs")
    assert frame["arch.pe"].tolist() == [4] and frame["timeloop_valid"].tolist() == [True]
    assert frame["target.cycle"].tolist() == [10] and frame["feature"].tolist() == ["search_design"]
    monkeypatch.setenv(data.VECTORS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert data.vectors_dir() == tmp_path / "elsewhere"

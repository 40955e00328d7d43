"""The published DOSA datasets: find, fetch, verify, cache and load them.

The data files published with the original DOSA artifact (github.com/ucb-bar/dosa, BSD-2-Clause)
are never copied into this repository. A file is looked up, in order, in

1. ``$DOSA_DATA_DIR/<relpath>`` when ``DOSA_DATA_DIR`` is set (read-only is fine: nothing is
   written there),
2. the cache, ``$DOSA_CACHE_DIR/<relpath>`` or ``~/.cache/dosa/<relpath>``,
3. the published URL, downloaded into the cache.

Every file is checked against its published SHA-256 before use, so results can only ever be
computed from the exact published bytes. The Timeloop dataset is published as a tarball; its one
member is unpacked (and verified) into the cache.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import threading
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dosa.io import atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "BASE_URL",
    "DataError",
    "DataFile",
    "DataIntegrityError",
    "DataUnavailableError",
    "UnknownDataFileError",
    "FILES",
    "FIRESIM_TEST_PREDICTORS",
    "available",
    "cache_dir",
    "data_dir",
    "load_firesim_test",
    "load_firesim_training",
    "load_timeloop_dataset",
    "path",
    "require_columns",
]

BASE_URL = "https://github.com/ucb-bar/dosa/raw/main/data/"
DATA_DIR_ENV = "DOSA_DATA_DIR"
CACHE_DIR_ENV = "DOSA_CACHE_DIR"
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class DataError(RuntimeError):
    """Base class for problems with the published data files."""


class DataIntegrityError(DataError):
    """A data file's SHA-256 differs from the published one; it must not be used."""


class DataUnavailableError(DataError):
    """A data file is neither available locally nor downloadable."""


class UnknownDataFileError(KeyError, ValueError):
    """A data file key that is not one of :data:`FILES`.

    A ``KeyError`` for lookups, and a ``ValueError`` so that the command line reports it as a
    bad input (one line, exit 2) instead of a traceback.
    """

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; the message should read as text.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DataFile:
    """One published file: where it lives, where it comes from and what its bytes hash to.

    For a tarball, ``member`` names the single member to use and ``member_sha256`` its hash;
    the member is unpacked next to the archive's relpath, inside the cache.
    """

    key: str
    relpath: str
    url: str
    sha256: str
    member: str | None = None
    member_sha256: str | None = None

    @property
    def is_archive(self) -> bool:
        """Whether the published file is a tarball whose member is the usable file."""
        return self.member is not None

    @property
    def member_relpath(self) -> str:
        """Relative path of the unpacked member (the archive's folder + member name)."""
        if self.member is None:
            raise ValueError(f"data file {self.key!r} is not an archive")
        parent = Path(self.relpath).parent
        return (parent / self.member).as_posix()


def _entry(
    key: str,
    relpath: str,
    sha256: str,
    member: str | None = None,
    member_sha256: str | None = None,
) -> DataFile:
    return DataFile(key, relpath, BASE_URL + relpath, sha256, member, member_sha256)


# SHA-256 values from the published SHA256SUMS (upstream commit a7a3239).
FILES: dict[str, DataFile] = {
    f.key: f
    for f in (
        _entry(
            "timeloop",
            "timeloop_dataset/dataset.csv.tar.gz",
            "5fc6f038bf49af1404362c45f84fb5827c931da9129b8613610f808aab60c4cb",
            member="dataset.csv",
            member_sha256="b0be52094ab5ae1057899346dec05ca48924ffaf81dc3c8564bf52752eb49e9d",
        ),
        _entry(
            "firesim_training",
            "firesim_training_data/firesim_results.csv",
            "190addc022cd5922af7b50761095298b83871f3fd5b080200221434a69dc8a5e",
        ),
        _entry(
            "firesim_test",
            "firesim_test_data/dataset.csv",
            "d273d4f84e8b82dc8ff7722a5ab23bb4c0057dd2c2f3d0fadccd07ffa6119c63",
        ),
        _entry(
            "firesim_test_analytical",
            "firesim_test_data/analytical.csv",
            "a9c1492b30882e3a2682e52697cd760753b3f742ff467b86fe89d9fd63d9c875",
        ),
        _entry(
            "firesim_test_both",
            "firesim_test_data/both.csv",
            "19e5fec9a7dcf7c25c7b458caef30d228035975de95e83d25576f7a99ce86f6a",
        ),
        _entry(
            "firesim_test_dnn",
            "firesim_test_data/dnn.csv",
            "109bf6772e486bf56b1143ced17ecad8e2b51abe97aec873a07c687641e0dc19",
        ),
    )
}

FIRESIM_TEST_PREDICTORS: tuple[str, ...] = ("analytical", "both", "dnn")


# --------------------------------------------------------------------------- directories


def data_dir() -> Path | None:
    """The user-supplied folder of published files (``$DOSA_DATA_DIR``), or None."""
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    return Path(value).expanduser()


def cache_dir() -> Path:
    """Where downloads and unpacked members go: ``$DOSA_CACHE_DIR`` or ``~/.cache/dosa``."""
    value = os.environ.get(CACHE_DIR_ENV)
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "dosa"


def _lookup(key: str) -> DataFile:
    try:
        return FILES[key]
    except KeyError:
        raise UnknownDataFileError(
            f"unknown DOSA data file {key!r}; allowed: {', '.join(sorted(FILES))}") from None


# --------------------------------------------------------------------------- verification

# (resolved path, mtime_ns, size) -> sha256 hex digest. Hashing the 15 MB Timeloop CSV on every
# load would be wasteful; a changed file changes mtime or size and is re-hashed.
_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def _sha256_file(file: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    with open(file, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _stat_key(file: Path) -> tuple[str, int, int]:
    st = file.stat()
    return (str(file.resolve()), st.st_mtime_ns, st.st_size)


def _digest(file: Path) -> str:
    """SHA-256 of ``file``, memoised per path + mtime + size within this process."""
    key = _stat_key(file)
    with _DIGESTS_LOCK:
        cached = _DIGESTS.get(key)
    if cached is not None:
        return cached
    digest = _sha256_file(file)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest
    return digest


def _remember_digest(file: Path, digest: str) -> None:
    """Record a digest computed while writing ``file`` so the next use need not re-hash it."""
    with _DIGESTS_LOCK:
        _DIGESTS[_stat_key(file)] = digest


def _verify(file: Path, expected: str, what: str, hint: str = "") -> None:
    """Raise DataIntegrityError unless ``file`` hashes to ``expected``."""
    actual = _digest(file)
    if actual != expected.lower():
        msg = (
            f"DOSA data file {what} at {file} failed its integrity check: "
            f"expected sha256 {expected}, got {actual}. Refusing to use it."
        )
        if hint:
            msg += " " + hint
        raise DataIntegrityError(msg)


def _is_verified(file: Path, expected: str) -> bool:
    """Non-raising check used by ``available``; logs when a present file is corrupt."""
    if not file.is_file():
        return False
    try:
        actual = _digest(file)
    except OSError as exc:
        logger.warning("cannot read %s: %s", file, exc)
        return False
    if actual != expected.lower():
        logger.warning(
            "%s exists but its sha256 is %s, expected %s; treating it as unavailable",
            file,
            actual,
            expected,
        )
        return False
    return True


# --------------------------------------------------------------------------- fetching


def _download(url: str, dest: Path) -> None:
    """Download ``url`` into ``dest`` (a temporary file). Tests replace this function."""
    logger.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        with open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)


def _unavailable(entry: DataFile, reason: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"DOSA data file {entry.key!r} ({entry.relpath}) is not available locally and could "
        f"not be downloaded from {entry.url} ({reason}). Set {DATA_DIR_ENV} to a folder "
        f"holding the published DOSA data files (e.g. shared/dosa-data, laid out as "
        f"<folder>/{entry.relpath}), or {CACHE_DIR_ENV} to a cache folder that holds them."
    )


def _fetch_into_cache(entry: DataFile, dest: Path) -> None:
    """Download ``entry`` to ``dest`` atomically; only a verified file ever gets the name."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unavailable(entry, f"cannot create cache folder {dest.parent}: {exc}") from exc
    try:
        with atomic_path(dest) as tmp:
            try:
                _download(entry.url, tmp)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # urllib.error.URLError and TimeoutError are OSErrors.
                raise _unavailable(entry, f"{type(exc).__name__}: {exc}") from exc
            _verify(
                tmp,
                entry.sha256,
                f"{entry.key!r} downloaded from {entry.url}",
                "The download is corrupt or the published file changed; it was discarded.",
            )
    except OSError as exc:  # e.g. cache folder not writable
        raise _unavailable(entry, f"cannot write to cache {dest.parent}: {exc}") from exc
    _remember_digest(dest, entry.sha256.lower())
    logger.info("cached %s at %s", entry.key, dest)


def _published_file(entry: DataFile) -> Path:
    """Verified local path of the file as published (fetching into the cache if needed)."""
    root = data_dir()
    if root is not None:
        candidate = root / entry.relpath
        if candidate.is_file():
            _verify(candidate, entry.sha256, repr(entry.key))
            return candidate
        logger.debug("%s not in %s=%s", entry.relpath, DATA_DIR_ENV, root)
    cached = cache_dir() / entry.relpath
    if cached.is_file():
        _verify(
            cached,
            entry.sha256,
            repr(entry.key),
            "Delete the cached file to download it again.",
        )
        return cached
    _fetch_into_cache(entry, cached)
    return cached


def _unpack_member(entry: DataFile, archive: Path, dest: Path) -> None:
    """Extract the one expected member of ``archive`` to ``dest``, verified and atomically.

    Only the named regular-file member is read, through its file object; its name is never
    used as an output path, so archive paths cannot escape the cache.
    """
    assert entry.member is not None and entry.member_sha256 is not None
    logger.info("unpacking %s from %s", entry.member, archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            try:
                info = tar.getmember(entry.member)
            except KeyError:
                raise DataIntegrityError(
                    f"DOSA archive {archive} ({entry.key!r}) has no member {entry.member!r}"
                ) from None
            if not info.isfile():
                raise DataIntegrityError(
                    f"member {entry.member!r} of {archive} ({entry.key!r}) is not a regular file"
                )
            src = tar.extractfile(info)
            if src is None:  # pragma: no cover - isfile() members always have a fileobj
                raise DataIntegrityError(f"cannot read {entry.member!r} from {archive}")
            with atomic_path(dest) as tmp:
                hasher = hashlib.sha256()
                with src, open(tmp, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        hasher.update(chunk)
                        out.write(chunk)
                actual = hasher.hexdigest()
                if actual != entry.member_sha256.lower():
                    raise DataIntegrityError(
                        f"member {entry.member!r} of DOSA archive {archive} ({entry.key!r}) "
                        f"failed its integrity check: expected sha256 {entry.member_sha256}, "
                        f"got {actual}. Refusing to use it."
                    )
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataIntegrityError(f"cannot read DOSA archive {archive}: {exc}") from exc
    _remember_digest(dest, actual)


def _member_file(entry: DataFile) -> Path:
    """Verified path of an archive's unpacked member (unpacking into the cache if needed)."""
    assert entry.member_sha256 is not None
    root = data_dir()
    if root is not None:
        pre_unpacked = root / entry.member_relpath
        if pre_unpacked.is_file():
            _verify(pre_unpacked, entry.member_sha256, f"{entry.key!r} (unpacked)")
            return pre_unpacked
    dest = cache_dir() / entry.member_relpath
    if dest.is_file():
        _verify(
            dest,
            entry.member_sha256,
            f"{entry.key!r} (unpacked)",
            "Delete the cached file to unpack it again.",
        )
        return dest
    archive = _published_file(entry)
    try:
        _unpack_member(entry, archive, dest)
    except OSError as exc:
        raise _unavailable(entry, f"cannot unpack into cache {dest.parent}: {exc}") from exc
    return dest


# --------------------------------------------------------------------------- public API


def path(key: str) -> Path:
    """Verified local path of data file ``key``, fetching it into the cache if needed.

    For the Timeloop tarball this is the unpacked ``dataset.csv``.
    """
    entry = _lookup(key)
    if entry.is_archive:
        return _member_file(entry)
    return _published_file(entry)


def available(key: str) -> bool:
    """Whether a verified copy of ``key`` exists locally; never downloads or unpacks.

    Tests and notebooks use it to skip work that needs the published data.
    """
    entry = _lookup(key)
    roots = [r for r in (data_dir(), cache_dir()) if r is not None]
    if entry.is_archive:
        assert entry.member_sha256 is not None
        if any(_is_verified(r / entry.member_relpath, entry.member_sha256) for r in roots):
            return True
    return any(_is_verified(r / entry.relpath, entry.sha256) for r in roots)


def require_columns(df: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    """Raise ValueError naming the missing column(s) and ``source`` (e.g. a CSV path).

    Fails early with a readable message instead of a KeyError deep inside a computation.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        shown = ", ".join(map(str, df.columns[:20]))
        more = f", ... ({len(df.columns)} in all)" if len(df.columns) > 20 else ""
        raise ValueError(
            f"{source}: missing required column(s) {', '.join(map(repr, missing))}; "
            f"columns present: {shown}{more}"
        )


@functools.lru_cache(maxsize=8)
def _read_csv_cached(file: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """Parse a CSV once per (path, mtime, size); callers get copies."""
    return pd.read_csv(file, low_memory=False)


def _load(key: str) -> pd.DataFrame:
    file = path(key)
    st = file.stat()
    return _read_csv_cached(str(file.resolve()), st.st_mtime_ns, st.st_size).copy()


def load_timeloop_dataset() -> pd.DataFrame:
    """Timeloop + Accelergy results for random Gemmini configs x layers x mappings (72,700 rows).

    Memoised in-process; each call returns a fresh copy that the caller may modify.
    """
    return _load("timeloop")


def load_firesim_training() -> pd.DataFrame:
    """FireSim-measured Gemmini RTL cycles for the learned-predictor training set (1,567 rows)."""
    return _load("firesim_training")


def load_firesim_test(predictor: str | None = None) -> pd.DataFrame:
    """DOSA-searched test points with FireSim RTL cycles.

    ``None`` gives all 222 rows (analytical, both, dnn concatenated); ``"analytical"``,
    ``"both"`` or ``"dnn"`` gives the 74 rows found with that latency predictor.
    """
    if predictor is None:
        return _load("firesim_test")
    if predictor not in FIRESIM_TEST_PREDICTORS:
        raise ValueError(
            f"unknown predictor {predictor!r}; allowed values: None, "
            + ", ".join(repr(p) for p in FIRESIM_TEST_PREDICTORS)
        )
    return _load(f"firesim_test_{predictor}")


# --------------------------------------------------------------------------- reference vectors

VECTORS_DIR_ENV = "DOSA_VECTORS_DIR"
#: Files of real-Timeloop reference vectors (not published data: outputs of the Timeloop build
#: the paper pins, run on mappings the published rows never cover; see notebook 01).
VECTOR_FILES: tuple[str, ...] = ("search_designs", "targeted")


def vectors_dir() -> Path | None:
    """``$DOSA_VECTORS_DIR``, else ``timeloop-vectors`` beside ``$DOSA_DATA_DIR``, else None."""
    value = os.environ.get(VECTORS_DIR_ENV)
    if value:
        return Path(value).expanduser()
    data = data_dir()
    if data is not None and (data.parent / "timeloop-vectors").is_dir():
        return data.parent / "timeloop-vectors"
    return None


def load_timeloop_vectors(name: str) -> pd.DataFrame:
    """One vector file in the published column format (``prob.*``, ``arch.*``, ``mapping.mapping``,
    ``target.cycle``, ``target.energy``) plus its own columns (``feature``, ``timeloop_valid``,
    ``timeloop_error``; search designs are all valid). Raises DataUnavailableError if absent."""
    from dosa.hardware import Hardware

    if name not in VECTOR_FILES:
        raise UnknownDataFileError(f"unknown vector file {name!r}; allowed: "
                                   + ", ".join(VECTOR_FILES))
    folder = vectors_dir()
    file = folder / f"{name}.csv" if folder is not None else None
    if file is None or not file.is_file():
        raise DataUnavailableError(
            f"Timeloop reference vectors {name}.csv not found; set {VECTORS_DIR_ENV} to the "
            f"timeloop-vectors folder (or {DATA_DIR_ENV} to a dosa-data folder beside it)")
    raw = pd.read_csv(file)
    require_columns(raw, [*"RSPQCKN", "Wstride", "Hstride", "pe_dim", "sp_kb", "acc_kb",
                          "mapping", "timeloop_cycles", "timeloop_energy_uj"], str(file))
    pe = pd.to_numeric(raw["pe_dim"], errors="coerce")
    bad = ~(pe.notna() & (pe == pe.round()) & (pe >= 1))
    if bad.any():
        raise ValueError(f"{file}: row {int(bad.to_numpy().argmax())} column pe_dim must be an "
                         f"integer >= 1, got {raw['pe_dim'].iloc[int(bad.to_numpy().argmax())]!r}")
    if "timeloop_valid" in raw and not raw["timeloop_valid"].isin([True, False]).all():
        raise ValueError(f"{file}: column timeloop_valid must hold True or False only")
    out = pd.DataFrame({f"prob.{d}": raw[d] for d in (*"RSPQCKN", "Wstride", "Hstride")})
    arch = pd.DataFrame([Hardware(int(p), float(s), float(a)).to_arch_columns()
                         for p, s, a in zip(pe, raw["sp_kb"], raw["acc_kb"], strict=True)])
    out = pd.concat([out, arch], axis=1)
    out["mapping.mapping"] = raw["mapping"]
    out["target.cycle"] = raw["timeloop_cycles"]
    out["target.energy"] = raw["timeloop_energy_uj"]
    out["feature"] = raw["feature"] if "feature" in raw else "search_design"
    out["timeloop_valid"] = raw["timeloop_valid"].astype(bool) if "timeloop_valid" in raw else True
    out["timeloop_error"] = (raw["timeloop_error"].fillna("") if "timeloop_error" in raw else "")
    return out

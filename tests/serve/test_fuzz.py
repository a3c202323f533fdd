"""Schemathesis against the live server's OpenAPI spec: no input gets a 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from live import fit_text_model, live_server

EXAMPLES = 30


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    fit_text_model(tmp_path / "base")
    shutil.copytree(tmp_path / "base", tmp_path / "model")
    report = tmp_path / "report"
    with live_server(tmp_path / "model", f"sqlite:///{tmp_path / 'fuzz.db'}") as server:
        cmd = [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES),
            "--generation-deterministic",
            "--report",
            "junit",
            "--report-dir",
            str(report),
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    # the run really exercised the API: every operation was tested, with many cases
    junit = next(report.glob("*.xml")).read_text()
    assert junit.count("<testcase") >= 14, junit[:2000]
    for path in ("POST /events", "GET /users/{user_id}/recommendations", "PUT /items/{item_id}"):
        assert path in junit


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # loopback only: never route the fuzzer through a proxy from the environment
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

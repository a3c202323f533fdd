"""`lmrec serve` and `lmrec retrain` from the command line."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from live import fit_text_model
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.models.base import Recommender
from lmrec.serve.state import trained_seq
from lmrec.serve.storage import EventRecord, Store

runner = CliRunner()


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_text_model(tmp_path_factory.mktemp("model") / "text")


def test_serve_refuses_a_public_interface_without_keys(base_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    r = runner.invoke(app, ["serve", "--model", str(base_model), "--db", db, "--host", "0.0.0.0"])
    assert r.exit_code == 2
    assert "without API keys" in r.output


def test_serve_reports_bad_settings(base_model: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["serve", "--model", str(base_model), "--port", "70000"])
    assert r.exit_code == 2 and "port" in r.output
    r = runner.invoke(app, ["serve", "--model", str(base_model), "--settings", "nope.toml"])
    assert r.exit_code == 2 and "nope.toml" in r.output
    r = runner.invoke(app, ["serve", "--model", str(base_model), "--db", "mysql+nope://x"])
    assert r.exit_code == 2 and "mysql" in r.output


def test_retrain_command_folds_stored_events_into_the_model(
    base_model: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)
    db = f"sqlite:///{tmp_path / 'e.db'}"
    with Store(db) as store:
        now = datetime.now(UTC)
        store.add_events([EventRecord(uuid.uuid4().hex, "cli-user", "m3", "like", now)])
    r = runner.invoke(app, ["retrain", "--model", str(model_dir), "--db", db])
    assert r.exit_code == 0, r.output
    assert "1 stored events" in r.output
    model = Recommender.load(model_dir)
    assert model.users is not None and "cli-user" in model.users
    assert trained_seq(model_dir) == 1
    r = runner.invoke(app, ["retrain", "--model", str(tmp_path / "none"), "--db", db])
    assert r.exit_code == 2


def test_settings_come_from_flags_then_env_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmrec.serve.settings import SETTINGS_FILE_ENV, ServeSettings

    file = tmp_path / "serve.toml"
    file.write_text('db_url = "sqlite:///from-file.db"\nmax_batch = 7\nport = 9000\n')
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(file))
    monkeypatch.setenv("LMREC_PORT", "9100")
    monkeypatch.setenv("LMREC_CLIENT_KEYS", "k" * 16 + ", " + "j" * 16)
    s = ServeSettings(model_dir=tmp_path, port=9200)
    assert s.db_url == "sqlite:///from-file.db" and s.max_batch == 7  # from the file
    assert s.port == 9200  # a flag beats env and file
    assert ServeSettings(model_dir=tmp_path).port == 9100  # env beats the file
    assert s.client_keys == ["k" * 16, "j" * 16]
    file.write_text("nonsense_key = 1\n")
    with pytest.raises(ValueError, match="nonsense_key"):
        ServeSettings(model_dir=tmp_path)

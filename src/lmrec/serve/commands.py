"""`lmrec serve` and `lmrec retrain` (registered on the main Typer app by lmrec.cli)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lmrec.errors import ConfigError


def register(app: typer.Typer, handle_errors: Callable[[Any], Any]) -> None:
    """Add the service commands to ``app``."""

    @app.command()
    @handle_errors
    def serve(
        model: Annotated[Path, typer.Option(help="Saved model folder (`lmrec fit --out`).")],
        db: Annotated[
            str | None,
            typer.Option(
                help="Store URL: sqlite:///FILE (default sqlite:///lmrec.db) or "
                "postgresql://user@host/db."
            ),
        ] = None,
        host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
        port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
        settings: Annotated[
            Path | None, typer.Option(help="TOML settings file (keys as in LMREC_* env).")
        ] = None,
    ) -> None:
        """Run the HTTP service: events, recommendations, catalog, users, web page at /."""
        import uvicorn

        from lmrec.serve.app import create_app
        from lmrec.serve.settings import SETTINGS_FILE_ENV, ServeSettings, is_loopback

        if settings is not None:
            if not settings.is_file():
                raise ConfigError(f"--settings: no such file {settings}")
            os.environ[SETTINGS_FILE_ENV] = str(settings)
        flags: dict[str, Any] = {"model_dir": model}
        for key, value in (("db_url", db), ("host", host), ("port", port)):
            if value is not None:
                flags[key] = value
        cfg = _settings(ServeSettings, flags)
        if cfg.open_access and not is_loopback(cfg.host):
            raise ConfigError(
                f"refusing to serve on {cfg.host} without API keys: set LMREC_CLIENT_KEYS and "
                "LMREC_ADMIN_KEYS (or bind 127.0.0.1)"
            )
        app_ = create_app(cfg)
        typer.echo(
            f"lmrec serving {app_.state.serving.current.version} on http://{cfg.host}:{cfg.port} "
            f"(store {app_.state.serving.store.url})",
            err=True,
        )
        uvicorn.run(app_, host=cfg.host, port=cfg.port, log_level=cfg.log_level)

    @app.command()
    @handle_errors
    def retrain(
        model: Annotated[Path, typer.Option(help="The served model folder; replaced in place.")],
        db: Annotated[str, typer.Option(help="Store URL the service writes events to.")],
        server: Annotated[
            str | None,
            typer.Option(help="Service base URL to tell to reload now (else it polls)."),
        ] = None,
        key: Annotated[
            str | None, typer.Option(help="Admin API key for --server.", envvar="LMREC_ADMIN_KEY")
        ] = None,
    ) -> None:
        """Refit the served model on its data plus stored events and swap it in."""
        from lmrec.serve.retrain import retrain as run_retrain
        from lmrec.serve.storage import Store

        store = Store(db)
        try:
            report = run_retrain(store, model)
        finally:
            store.close()
        typer.echo(
            f"retrained on {report.n_interactions} interactions ({report.n_events} stored "
            f"events, up to seq {report.events_seq}) in {report.fit_seconds:.1f}s -> {model}",
            err=True,
        )
        if server:
            import httpx

            headers = {"X-API-Key": key} if key else {}
            r = httpx.post(f"{server.rstrip('/')}/admin/reload", headers=headers, timeout=120)
            if r.status_code != 200:
                raise ConfigError(f"--server: reload answered {r.status_code}: {r.text[:200]}")
            typer.echo(f"server: {r.json()['status']}", err=True)


def _settings(cls: Any, flags: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return cls(**flags)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"bad service settings: {problems}") from None

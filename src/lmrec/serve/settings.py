"""Service settings: flags, then ``LMREC_*`` environment variables, then a TOML file."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

#: Environment variable naming a TOML settings file (``lmrec serve --settings`` sets it too).
SETTINGS_FILE_ENV = "LMREC_SETTINGS_FILE"


class ServeSettings(BaseSettings):
    """Everything `lmrec serve` can be told; flags win over env, env over the file."""

    model_config = SettingsConfigDict(env_prefix="LMREC_", extra="forbid")

    model_dir: Path = Field(description="Saved model directory (`lmrec fit --out`).")
    db_url: str = Field(
        "sqlite:///lmrec.db",
        description="SQLAlchemy URL of the event store (sqlite:///FILE or postgresql://...).",
    )
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    client_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="API keys allowed to send events and read lists."
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="API keys allowed to do everything, incl. catalog writes and deletion.",
    )
    unknown_items: Literal["reject", "create"] = Field(
        "reject", description="Events naming an unknown item: 404, or create a bare item."
    )
    max_body_bytes: int = Field(2_000_000, gt=0, description="Largest request body accepted.")
    max_batch: int = Field(5_000, gt=0, description="Most events in one POST /events.")
    max_id_length: int = Field(128, gt=0, le=128, description="Longest user/item/event ID.")
    max_text_length: int = Field(10_000, gt=0, description="Longest text field (profile, title).")
    max_k: int = Field(200, gt=0, description="Longest list a request may ask for.")
    future_skew_s: float = Field(
        300.0, ge=0, description="How far in the future an event timestamp may be (clock skew)."
    )
    reload_interval_s: float = Field(
        5.0, ge=0, description="How often to look for a retrained model on disk (0: never)."
    )
    retrain_interval_s: float = Field(
        0.0, ge=0, description="Retrain from stored events on this schedule (0: only on demand)."
    )
    llm_backend: str = Field(
        "template",
        description="Explanations: template, a packaged model (smollm2-135m, qwen2.5-0.5b, "
        "qwen2.5-0.5b-q4_0), "
        "a .gguf path, or an OpenAI-compatible base URL.",
    )
    llm_timeout_s: float = Field(10.0, gt=0, description="Seconds one LLM call may take.")
    llm_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How much lower the LLM's CPU priority is than list requests' "
        "(Linux nice; 0: the same).",
    )
    llm_cpus: int = Field(
        0,
        ge=0,
        description="CPUs the LLM process may use, the rest kept for requests (0: all).",
    )
    llm_idle: bool = Field(
        False,
        description="Run the LLM process under SCHED_IDLE (Linux): CPU only when requests "
        "leave it idle (then llm_nice does not matter).",
    )
    llm_process: bool = Field(
        True,
        description="Run a local model in its own process (else on a thread of the server's).",
    )
    log_level: str = Field("info", description="uvicorn log level.")

    @field_validator("client_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: Any) -> Any:
        # env vars carry one comma-separated string (NoDecode: not parsed as JSON first)
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @field_validator("client_keys", "admin_keys")
    @classmethod
    def _long_keys(cls, v: list[str]) -> list[str]:
        short = [k for k in v if len(k) < 16]
        if short:
            raise ValueError(f"API keys must be at least 16 characters ({len(short)} are not)")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        file = os.environ.get(SETTINGS_FILE_ENV)
        if file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(file)))
        return tuple(sources)

    @property
    def open_access(self) -> bool:
        """No key configured: only loopback clients are served."""
        return not self.client_keys and not self.admin_keys


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

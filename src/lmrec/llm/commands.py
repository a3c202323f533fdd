"""`lmrec generate` (registered on the main Typer app by lmrec.cli)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from lmrec.errors import ConfigError, check_option


def register(app: typer.Typer, handle_errors: Callable[[Any], Any]) -> None:
    """Add the LLM commands to ``app``."""

    @app.command()
    @handle_errors
    def generate(
        model: Annotated[Path, typer.Option(help="Saved text or two-tower model folder.")],
        user: Annotated[str, typer.Option(help="User ID (their fitted history is the input).")],
        k: Annotated[int, typer.Option(min=1, max=100, help="List length.")] = 10,
        request: Annotated[
            str | None, typer.Option(help="A typed request, e.g. 'a 90s animated comedy'.")
        ] = None,
        backend: Annotated[
            str,
            typer.Option(
                help="template, a packaged model (smollm2-135m, qwen2.5-0.5b, "
                "qwen2.5-0.5b-q4_0), a .gguf path, "
                "or an OpenAI-compatible base URL (http://...)."
            ),
        ] = "template",
        mode: Annotated[str, typer.Option(help="candidates (shortlist + grammar) or free.")] = (
            "candidates"
        ),
        language: Annotated[str, typer.Option(help="Explanation language: en or zh.")] = "en",
        timeout: Annotated[float, typer.Option(help="Seconds one LLM call may take.")] = 60.0,
        format: Annotated[str, typer.Option(help="json or text.")] = "text",
    ) -> None:
        """LLM recommendations grounded to the catalog, each with an evidence-based explanation."""
        from lmrec.llm.backends import make_backend
        from lmrec.llm.evidence import EvidenceBuilder
        from lmrec.llm.explain import catalog_vocabulary, explain_list
        from lmrec.llm.generate import DirectGenerator, GenerateConfig
        from lmrec.models.base import Recommender

        check_option("--format", format, ("json", "text"))
        check_option("--mode", mode, ("candidates", "free"))
        check_option("--language", language, ("en", "zh"))
        lang: Literal["en", "zh"] = "zh" if language == "zh" else "en"
        rec = Recommender.load(model)
        users, items, seen = rec._check()
        if user not in users:
            raise ConfigError(f"--user: unknown user {user!r} in {model}")
        uidx = int(users.index([user], "user")[0])
        history = [
            str(i) for i in items.to_ids(seen.indices[seen.indptr[uidx] : seen.indptr[uidx + 1]])
        ]
        cfg = backend_config(backend, timeout)
        llm = make_backend(cfg)
        gen = DirectGenerator(rec, llm, config=GenerateConfig(mode=mode, language=lang))
        out = gen.generate(history, k=k, request=request)
        table = rec.item_table
        assert table is not None
        vectors = getattr(rec, "item_vectors", None)
        builder = EvidenceBuilder(table, rec.fitted_pairs(), vectors, like_threshold=None)
        explanations = explain_list(
            builder, user, out.items, llm, language, catalog_vocabulary(table), request=request
        )
        rows = []
        for rank, (iid, ex) in enumerate(zip(out.items, explanations, strict=True), start=1):
            rows.append(
                {
                    "rank": rank,
                    "item_id": iid,
                    "title": str(table.loc[iid, "title"]),
                    "explanation": ex.text,
                    "explanation_source": ex.source,
                    "evidence": ex.evidence.to_prompt_data(lang),
                }
            )
        if format == "json":
            meta = {
                "user_id": user,
                "backend": cfg.kind if cfg.kind != "llama-cpp" else cfg.model,
                "mode": mode,
                "grounded": len(out.grounding.items),
                "filled": out.filled,
                "problems": out.problems,
                "seconds": round(out.seconds, 3),
            }
            typer.echo(json.dumps({**meta, "items": rows}, ensure_ascii=False, indent=2))
            return
        for row in rows:
            typer.echo(f"{row['rank']:>2}. {row['title']} ({row['item_id']})")
            typer.echo(f"    {row['explanation']}")


def backend_config(spec: str, timeout: float) -> Any:
    from lmrec.llm.backends import BackendConfig

    if spec == "template":
        return BackendConfig(kind="template")
    if spec.startswith(("http://", "https://")):
        return BackendConfig(kind="openai", base_url=spec, model="local", timeout_s=timeout)
    return BackendConfig(kind="llama-cpp", model=spec, timeout_s=timeout)

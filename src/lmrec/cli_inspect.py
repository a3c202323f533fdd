"""`lmrec similar` and `lmrec profile`: look inside a saved model (registered by lmrec.cli)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lmrec.errors import ConfigError, check_option


def register(app: typer.Typer, handle_errors: Callable[[Any], Any]) -> None:
    """Add the model-inspection commands to ``app``."""

    @app.command()
    @handle_errors
    def similar(
        model: Annotated[Path, typer.Option(help="Folder of a fitted model.")],
        item: Annotated[str, typer.Option(help="Item ID.")],
        k: Annotated[int, typer.Option(min=1, max=10_000, help="List length.")] = 10,
        fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    ) -> None:
        """Items most similar to one item (models with item vectors: text, two-tower, text-seq)."""
        from lmrec.data.schema import item_titles
        from lmrec.models.base import Recommender

        check_option("--format", fmt, ("csv", "json"))
        rec = Recommender.load(model)
        similar_items = getattr(rec, "similar_items", None)
        if similar_items is None:
            raise ConfigError(
                f"model '{rec.name}' has no item similarity; use one with item vectors "
                "(text, two-tower, text-seq)"
            )
        sims = similar_items(item, k=k)
        titles = item_titles(rec.item_table)
        if titles is not None:
            sims.insert(1, "title", [str(titles.get(i, "")) for i in sims["item_id"]])
        if fmt == "json":
            rows = sims.to_dict(orient="records")
            typer.echo(json.dumps({"item_id": item, "similar": rows}, indent=2, ensure_ascii=False))
        else:
            sims.to_csv(sys.stdout, index=False)

    @app.command()
    @handle_errors
    def profile(
        model: Annotated[Path, typer.Option(help="Folder of a fitted model.")],
        user: Annotated[str, typer.Option(help="User ID.")],
        top: Annotated[int, typer.Option(min=1, max=1000, help="Values shown per group.")] = 5,
        fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    ) -> None:
        """A user's portrait: activity level and most common genres, decades and KG entities."""
        from lmrec.models.base import Recommender
        from lmrec.rank.profile import profile_for

        check_option("--format", fmt, ("text", "json"))
        portrait = profile_for(Recommender.load(model), user, top_n=top)
        if fmt == "json":
            typer.echo(json.dumps(portrait.to_dict(), indent=2, ensure_ascii=False))
            return
        typer.echo(portrait.summary)
        if portrait.top:
            typer.echo("\nItems of the user holding each value (count, share):")
        for group, pairs in portrait.counts.items():
            shares = dict(portrait.top[group])
            cells = [
                f"{v} ({n}, {100 * shares[v]:.{0 if shares[v] >= 0.1 else 1}f}%)" for v, n in pairs
            ]
            typer.echo(f"  {group}: " + ", ".join(cells))

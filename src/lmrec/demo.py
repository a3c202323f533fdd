"""``lmrec demo``: the main job on MovieLens-100K with the embedded defaults, narrated.

Fetch, split, tune and test the classical baselines and the language-model two-tower model on
one split, refit the best, then show what only a text model can do: a new film added from its
text alone is recommended at once, and a user known only by a typed request is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

BASELINES = ["pop", "itemknn", "ease", "als", "bpr"]
#: two-tower's config as chosen on this split's validation part by `lmrec evaluate`
#: (benchmarks/RESULTS.md); the demo uses it (with early stopping) rather than a 6-fit search.
TWO_TOWER = {"id_dropout": 0.1, "learning_rate": 0.0003}
#: New arrivals nobody has rated, each with the film whose fans it should suit.
NEW_FILMS = [
    ({"item_id": "new-kids", "title": "Robo Pals", "year": "1996",
      "genres": "Animation Children's Comedy"}, "Toy Story"),
    ({"item_id": "new-horror", "title": "Midnight Hollow", "year": "1997",
      "genres": "Horror Thriller"}, "Scream"),
    ({"item_id": "new-romance", "title": "Paris in Spring", "year": "1996",
      "genres": "Drama Romance"}, "Sense and Sensibility"),
]  # fmt: skip
REQUEST = "a 90s animated comedy for my kids"


def run_demo(out: Path, echo: Callable[[str], None]) -> None:
    """Run the demo, writing results under ``out`` and narrating through ``echo``."""
    from lmrec.data.fetch import fetch_dataset, load_builtin
    from lmrec.data.schema import item_titles
    from lmrec.data.splits import make_split, save_split
    from lmrec.evaluate.protocol import EvalConfig, compare
    from lmrec.evaluate.report import markdown_table, plot_png, save_json
    from lmrec.models import TextRecommender, TwoTower, create_model

    t0 = time.perf_counter()
    echo(f"1. fetched MovieLens-100K into {fetch_dataset('ml-100k')}")
    ds = load_builtin("ml-100k")
    echo(f"   {ds.n_interactions} interactions, {len(ds.user_ids)} users, {len(ds.item_ids)} items")
    split = make_split(ds, "ratio", seed=2020)
    split_dir = save_split(split, out / "split" / ds.name)
    echo(f"2. split 8:1:1 per user (RecBole RS+RO, seed 2020), exported to {split_dir}")
    echo("3. tuning each baseline on validation, testing on the held-out 10% (full ranking);")
    echo("   two-tower (MiniLM item text + contrastive adapters) early-stops on validation:")
    say = lambda m: echo(f"   {m}")  # noqa: E731
    runs = compare(split, BASELINES, EvalConfig(), log=say)
    runs += compare(
        split, ["two-tower"], EvalConfig(tune=False), configs={"two-tower": TWO_TOWER}, log=say
    )
    save_json(runs, out / "results.json", {"data": "ml-100k", "protocol": "ratio", "seed": 2020})
    plot_png(runs, out / "results.png", title="MovieLens-100K, ratio split")
    echo("\n" + markdown_table(runs) + "\n")

    best = max(runs, key=lambda r: r.test.metrics["ndcg@10"])
    final = create_model(best.model, **best.config).fit(split.fitted())
    final.save(out / "model")
    titles = item_titles(final.item_table)
    echo(f"4. refitted the best model ({best.model}) on train+valid, saved to {out / 'model'};")
    echo("   top 5 for user 1:")
    _show(final.recommend(["1"], k=5), titles, echo)

    tt = next(r for r in runs if r.model == "two-tower")
    model = TwoTower(**tt.config).fit(split.fitted())
    shelf = pd.DataFrame([film for film, _ in NEW_FILMS])
    model.add_items(shelf)
    echo(
        f"5. added {len(shelf)} films nobody has rated to two-tower, from their text only (no "
        "retraining), as a new-arrivals shelf; share of each fan group whose first pick is "
        f"the matching film (chance {1 / len(shelf):.0%}):"
    )
    for film, liked in NEW_FILMS:
        fans = _fans_of(ds, liked)
        top = model.recommend(fans, k=1, candidates=list(shelf["item_id"]))
        share = float((top["item_id"] == film["item_id"]).mean())
        echo(f"   {len(fans)} fans of {liked}: {share:.0%} get {film['title']} ({film['genres']})")
    text = TextRecommender().fit(split.fitted())  # zero-shot: item vectors from the cache
    echo(f"6. a new user who only typed {REQUEST!r} gets (zero-shot text model):")
    _show(text.recommend_for(request=REQUEST, k=5), item_titles(text.item_table), echo)
    from lmrec.rank.profile import profile_for

    portrait = profile_for(final, "1", top_n=3, interactions=split.fitted().interactions)
    echo(f"7. user 1's profile (`lmrec profile --model {out / 'model'} --user 1`):")
    echo(f"   {portrait.summary}")
    echo(
        f"\nresults: {out / 'results.json'}, chart: {out / 'results.png'} "
        f"({time.perf_counter() - t0:.0f}s)"
    )


def _fans_of(ds: object, title: str) -> list[str]:
    """Users who rated the film with this title."""
    from lmrec.data.schema import Dataset, item_titles

    assert isinstance(ds, Dataset)
    titles = item_titles(ds.items)
    assert titles is not None
    ids = set(titles[titles == title].index)
    inter = ds.interactions
    return sorted(set(inter.loc[inter["item_id"].isin(ids), "user_id"]))


def _show(recs: pd.DataFrame, titles: pd.Series | None, echo: Callable[[str], None]) -> None:
    for r in recs.itertuples():
        title = titles.get(r.item_id, "") if titles is not None else ""
        echo(f"   {r.rank}. {title} (item {r.item_id}, score {r.score:.3f})")

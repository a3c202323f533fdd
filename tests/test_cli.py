"""The `lmrec` command line: the fit/recommend/evaluate contract and bad-input handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lmrec.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train/valid CSVs and an item table for 40 users x 30 items, in two taste clusters."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        pool = np.arange(15) + 15 * (u % 2)
        for t, i in enumerate(rng.choice(pool, size=9, replace=False)):
            rows.append((f"user{u}", f"m{i}", float(rng.integers(1, 6)), 1000 * u + t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    last = inter.groupby("user_id").cumcount(ascending=False) == 0
    paths = {"train": d / "train.csv", "valid": d / "valid.csv", "items": d / "items.csv"}
    inter[~last].to_csv(paths["train"], index=False)
    inter[last].to_csv(paths["valid"], index=False)
    pd.DataFrame(
        {"item_id": [f"m{i}" for i in range(30)], "title": [f"Movie {i}" for i in range(30)]}
    ).to_csv(paths["items"], index=False)
    paths["dir"] = d
    return paths


@pytest.fixture(scope="module")
def model_dir(files: dict[str, Path]) -> Path:
    out = files["dir"] / "model"
    code, _, stderr = run(
        "fit", "--train", files["train"], "--valid", files["valid"], "--items", files["items"],
        "--model", "ease", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    return out


def test_fit_tunes_on_valid_and_records_it(model_dir: Path) -> None:
    record = json.loads((model_dir / "fit.json").read_text())
    assert record["model"] == "ease"
    assert len(record["trials"]) > 1  # the grid was searched
    assert record["config"]["reg_weight"] in {t["config"]["reg_weight"] for t in record["trials"]}


def test_recommend_all_excludes_train_and_valid(files: dict[str, Path], model_dir: Path) -> None:
    out = files["dir"] / "recs.csv"
    code, _, stderr = run(
        "recommend", "--model", model_dir, "--users", "all", "--k", "5", "--out", out
    )
    assert code == 0, stderr
    recs = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert recs["user_id"].nunique() == 40 and (recs.groupby("user_id").size() == 5).all()
    fitted = pd.concat([pd.read_csv(files["train"]), pd.read_csv(files["valid"])])
    seen = set(zip(fitted["user_id"].astype(str), fitted["item_id"].astype(str), strict=True))
    assert not any(pair in seen for pair in zip(recs["user_id"], recs["item_id"], strict=True))


def test_recommend_candidates_and_user_file(files: dict[str, Path], model_dir: Path) -> None:
    users = files["dir"] / "users.txt"
    users.write_text("user0\nuser1\n")
    shelf = files["dir"] / "shelf.csv"
    shelf.write_text("item_id\nm3\nm4\nm20\nm21\n")
    code, stdout, stderr = run(
        "recommend", "--model", model_dir, "--users", users, "--candidates", shelf, "--k", "3"
    )
    assert code == 0, stderr
    recs = pd.read_csv(__import__("io").StringIO(stdout), dtype=str)
    assert set(recs["user_id"]) == {"user0", "user1"}
    assert set(recs["item_id"]) <= {"m3", "m4", "m20", "m21"}


def test_recommend_one_user_json_with_titles(model_dir: Path) -> None:
    code, stdout, stderr = run(
        "recommend", "--model", model_dir, "--user", "user3", "--k", "4", "--format", "json"
    )
    assert code == 0, stderr
    obj = json.loads(stdout)
    assert obj["user_id"] == "user3" and len(obj["items"]) == 4
    assert all(it["title"] == f"Movie {it['item_id'][1:]}" for it in obj["items"])
    assert [it["rank"] for it in obj["items"]] == [1, 2, 3, 4]


def test_evaluate_writes_table_json_and_png(files: dict[str, Path], tmp_path: Path) -> None:
    split_dir = tmp_path / "split" / "toy"
    # split the toy data with the exported-split path the peer script consumes
    inter = pd.read_csv(files["train"])
    inter.to_csv(tmp_path / "all.csv", index=False)
    code, _, stderr = run(
        "data", "split", "--data", tmp_path / "all.csv", "--protocol", "ratio", "--out", split_dir
    )
    assert code == 0, stderr
    assert (split_dir / f"{split_dir.name}.train.inter").is_file()
    code, stdout, stderr = run(
        "evaluate",
        "--data",
        split_dir,
        "--models",
        "pop,ease",
        "--out",
        tmp_path / "ev",
        "--no-tune",
    )
    assert code == 0, stderr
    assert "| pop |" in stdout and "| ease |" in stdout and "ndcg@10" in stdout
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert set(report["models"]) == {"pop", "ease"}
    assert (tmp_path / "ev" / "results.png").read_bytes()[:4] == b"\x89PNG"
    # every model is paired with the first of --models on the same test users
    assert "Paired with pop" in stdout and "| ease | pop | ndcg@10 |" in stdout
    paired = report["paired"]["ease"]
    test = {m: report["models"][m]["test"]["ndcg@10"] for m in ("pop", "ease")}
    assert paired["ratio"] == pytest.approx(test["ease"] / test["pop"])
    low, high = paired["ci95"]
    assert low <= paired["ratio"] <= high
    code, _, stderr = run(
        "evaluate", "--data", split_dir, "--models", "pop,ease", "--baseline", "als",
        "--out", tmp_path / "ev2", "--no-tune",
    )  # fmt: skip
    assert code == 2 and "--baseline" in stderr and "als" in stderr


def test_evaluate_pairs_nothing_against_a_baseline_that_scores_zero(tmp_path: Path) -> None:
    # on a cold-item split CF models never rank the held-out items: their NDCG is exactly 0
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}") for u in range(40) for i in rng.choice(60, 12, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(tmp_path / "all.csv", index=False)
    code, _, stderr = run(
        "evaluate", "--data", tmp_path / "all.csv", "--protocol", "cold-item",
        "--models", "ease,pop", "--out", tmp_path / "ev", "--no-tune",
    )  # fmt: skip
    assert code == 0, stderr
    assert "no paired ratio for pop" in stderr and "mean ndcg@10 is 0" in stderr
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert report["models"]["ease"]["test"]["ndcg@10"] == 0.0 and report["paired"] == {}


# -- bad input: exit code 2, one line naming the place, no traceback ----------------------
def _bad(tmp_path: Path, content: bytes | str, name: str = "train.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("user_id,item\nu1,i1\n", ["user_id", "item_id"]),  # missing column
        ("user_id,item_id,rating\nu1,i1,5\nu2,i2,five\n", ["line 3", "rating", "five"]),
        ("user_id,item_id,rating\nu1,i1,5\nu2,i2,NaN\n", ["line 3", "rating"]),
        ("", ["empty"]),
        ("user_id,item_id\nu1,i1\nu2,i2\nu1,i1\n", ["duplicate", "line 2", "line 4"]),
        (b"user_id,item_id\nu1,i1\nu2,\xff\xfe\n", ["line 3", "decode"]),
    ],
    ids=["missing-column", "non-numeric", "nan", "empty", "duplicate", "undecodable"],
)
def test_fit_bad_input(tmp_path: Path, content: bytes | str, expected: list[str]) -> None:
    path = _bad(tmp_path, content)
    code, _, stderr = run("fit", "--train", path, "--model", "pop", "--out", tmp_path / "m")
    assert code == 2
    assert "Traceback" not in stderr
    assert str(path) in stderr
    for part in expected:
        assert part in stderr, stderr


def test_unknown_model_and_bad_options(
    files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    code, _, stderr = run(
        "fit", "--train", files["train"], "--model", "nope", "--out", tmp_path / "m"
    )
    assert code == 2 and "unknown model 'nope'" in stderr and "ease" in stderr
    code, _, stderr = run("evaluate", "--data", "ml-100k", "--models", "pop,nope")
    assert code == 2 and "nope" in stderr
    code, _, stderr = run("evaluate", "--data", "ml-100k", "--protocol", "sideways")
    assert code == 2 and "--protocol" in stderr
    code, _, stderr = run("recommend", "--model", model_dir, "--user", "ghost")
    assert code == 2 and "ghost" in stderr
    code, _, stderr = run("recommend", "--model", tmp_path, "--user", "user1")
    assert code == 2 and "not an lmrec model" in stderr
    code, _, stderr = run(
        "fit", "--train", tmp_path / "missing.csv", "--model", "pop", "--out", tmp_path / "m"
    )
    assert code == 2 and "missing.csv" in stderr


def test_bad_model_config_file(files: dict[str, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "ease.toml"
    cfg.write_text("reg_weight = -3\n")
    code, _, stderr = run(
        "fit",
        "--train",
        files["train"],
        "--model",
        "ease",
        "--config",
        cfg,
        "--out",
        tmp_path / "m",
    )
    assert code == 2 and "reg_weight" in stderr
    cfg.write_text("reg_weight = = 3\n")
    code, _, stderr = run(
        "fit",
        "--train",
        files["train"],
        "--model",
        "ease",
        "--config",
        cfg,
        "--out",
        tmp_path / "m",
    )
    assert code == 2 and str(cfg) in stderr


def test_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "lmrec"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    path = _bad(tmp_path, "user_id,item_id,rating\nu1,i1,x\n")
    res = subprocess.run(
        [str(exe), "fit", "--train", str(path), "--model", "pop", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "line 2" in res.stderr


def test_fit_with_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid,movieId,stars\na,x,4\na,y,5\nb,x,3\nb,z,1\n")
    code, _, stderr = run(
        "fit", "--train", path, "--model", "pop", "--out", tmp_path / "m",
        "--columns", "user_id=uid,item_id=movieId,rating=stars",
    )  # fmt: skip
    assert code == 0, stderr
    code, stdout, _ = run("recommend", "--model", tmp_path / "m", "--user", "b", "--format", "json")
    assert [it["item_id"] for it in json.loads(stdout)["items"]] == ["y"]
    code, _, stderr = run(
        "fit", "--train", path, "--model", "pop", "--out", tmp_path / "m", "--columns", "uid"
    )
    assert code == 2 and "--columns" in stderr


def test_split_with_rating_filter_and_kcore(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "s" / "toy"
    code, _, stderr = run(
        "data", "split", "--data", files["train"], "--protocol", "loo",
        "--min-rating", "3", "--kcore", "3", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    parts = [pd.read_csv(out / f"toy.{p}.inter", sep="\t") for p in ("train", "valid", "test")]
    allp = pd.concat(parts)
    assert (allp["rating:float"] >= 3).all()
    assert allp.groupby("user_id:token").size().min() >= 3
    assert allp.groupby("item_id:token").size().min() >= 3


def test_similar_items_for_a_text_model(files: dict[str, Path], tmp_path: Path) -> None:
    items = pd.DataFrame(
        {
            "item_id": [f"m{i}" for i in range(30)],
            "title": [("Space alien sci-fi war" if i < 15 else "Romantic love comedy") + f" {i}"
                      for i in range(30)],
        }
    )  # fmt: skip
    items.to_csv(tmp_path / "items.csv", index=False)
    out = tmp_path / "text-model"
    code, _, stderr = run(
        "fit", "--train", files["train"], "--items", tmp_path / "items.csv", "--model", "text",
        "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    code, stdout, stderr = run("similar", "--model", out, "--item", "m3", "--k", "5")
    assert code == 0, stderr
    sims = pd.read_csv(__import__("io").StringIO(stdout))
    assert list(sims.columns) == ["item_id", "title", "rank", "score"]
    assert len(sims) == 5 and "m3" not in set(sims["item_id"])
    assert all(int(i[1:]) < 15 for i in sims["item_id"])  # the same topic
    code, stdout, _ = run("similar", "--model", out, "--item", "m20", "--format", "json")
    assert code == 0 and json.loads(stdout)["similar"][0]["title"].startswith("Romantic")
    code, _, stderr = run("similar", "--model", out, "--item", "nope")
    assert code == 2 and "nope" in stderr


def test_similar_needs_item_vectors(model_dir: Path) -> None:
    code, _, stderr = run("similar", "--model", model_dir, "--item", "m1")
    assert code == 2 and "no item similarity" in stderr


def test_models_lists_the_registry() -> None:
    code, stdout, _ = run("models")
    assert code == 0
    names = {line.split()[0] for line in stdout.splitlines() if line.strip()}
    assert {"ease", "text", "two-tower", "sasrec"} <= names


def test_evaluate_among_heldout_items(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}") for u in range(60) for i in rng.choice(40, 8, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(tmp_path / "all.csv", index=False)
    args = ["evaluate", "--data", tmp_path / "all.csv", "--protocol", "cold-item",
            "--models", "pop", "--no-tune"]  # fmt: skip
    code, _, stderr = run(*args, "--out", tmp_path / "all", "--candidates", "heldout")
    assert code == 0, stderr
    report = json.loads((tmp_path / "all" / "results.json").read_text())
    assert report["candidates"] == "heldout"
    heldout = report["models"]["pop"]["test"]["recall@10"]
    code, _, stderr = run(*args, "--out", tmp_path / "full")
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    # pop never ranks a cold item among all items; among the held-out ones it must
    assert full["models"]["pop"]["test"]["recall@10"] == 0.0
    assert heldout > 0.0
    code, _, stderr = run(*args, "--out", tmp_path / "x", "--candidates", tmp_path / "none.txt")
    assert code == 2 and "none.txt" in stderr


@pytest.mark.parametrize("name", ["two-tower", "text-seq"])
def test_language_model_models_through_fit_and_recommend(
    files: dict[str, Path], tmp_path: Path, name: str
) -> None:
    small = {
        "two-tower": "dim = 16\nhidden = 32\nepochs = 3\nbatch_size = 64\nnum_threads = 1\n",
        "text-seq": "hidden_size = 16\nn_heads = 1\nn_layers = 1\ninner_size = 32\n"
        "max_len = 10\nepochs = 3\nbatch_size = 16\nnum_threads = 1\n",
    }[name]
    (tmp_path / "small.toml").write_text(small)
    out = tmp_path / name
    code, _, stderr = run(
        "fit", "--train", files["train"], "--valid", files["valid"], "--items", files["items"],
        "--model", name, "--config", tmp_path / "small.toml", "--no-tune", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    code, stdout, stderr = run("recommend", "--model", out, "--user", "user3", "--format", "json")
    assert code == 0, stderr
    obj = json.loads(stdout)
    seen = set(pd.concat([pd.read_csv(files["train"]), pd.read_csv(files["valid"])])
               .query("user_id == 'user3'")["item_id"])  # fmt: skip
    assert len(obj["items"]) == 10 and not {it["item_id"] for it in obj["items"]} & seen
    code, stdout, _ = run("similar", "--model", out, "--item", "m1", "--k", "3")
    assert code == 0 and len(stdout.strip().splitlines()) == 4

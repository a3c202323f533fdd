"""Run RecBole 1.2.1 models on a split exported by lmrec as RecBole benchmark files.

Runs inside the peer virtualenv made by ``recbole.sh`` (not in lmrec's own
environment). Each model runs in a child process of its own, so a model that
crashes (even hard) is recorded under ``missing`` and the run goes on.

    python recbole_run.py SPLIT_DIR [--models BPR,EASE,...] [--out FILE]
                          [--lmrec LMREC_RESULTS.json] [--workdir DIR]
    python recbole_run.py --sequential ATOMIC_DIR [--models SASRec,GRU4Rec] [--out FILE]
    python recbole_run.py --table-only --out FILE [--lmrec LMREC_RESULTS.json]

The split folder ``.../<name>/`` holds ``<name>.train.inter``,
``<name>.valid.inter`` and ``<name>.test.inter``; RecBole reads them with
``benchmark_filename: [train, valid, test]``, so RecBole does no splitting of
its own. Only the ``.inter`` columns are loaded (``.item``/``.user`` are
ignored: a pure collaborative-filtering comparison).

With ``--sequential`` the folder is an unsplit atomic dataset ``<name>/<name>.inter``
(with timestamps): RecBole's sequential models build their item sequences during
their own chronological leave-one-out split (``LS: valid_and_test``, ``order: TO``),
so they cannot read pre-split files. The test and validation item RecBole picked
for each user are dumped to ``<out stem>.loo.csv`` (``user_id,test_item,valid_item``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings

DEFAULT_MODELS = "BPR,EASE,ItemKNN,LightGCN,MultiVAE"
DEFAULT_SEQ_MODELS = "SASRec,GRU4Rec"
MAX_ITEM_LIST_LENGTH = 50
TABLE_METRICS = ["recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10"]
PARTS = ["train", "valid", "test"]


# --------------------------------------------------------------------------- #
# one model (child process)
# --------------------------------------------------------------------------- #
def _resolve_model(name: str):
    """RecBole's get_model is case-sensitive on the class name; accept any case."""
    import importlib
    import importlib.util

    for sub in (
        "general_recommender",
        "context_aware_recommender",
        "sequential_recommender",
        "knowledge_aware_recommender",
        "exlib_recommender",
    ):
        path = f"recbole.model.{sub}.{name.lower()}"
        try:  # exlib_recommender's __init__ imports lightgbm/xgboost (not installed)
            if importlib.util.find_spec(path) is None:
                continue
        except ImportError:
            continue
        module = importlib.import_module(path)
        for attr in dir(module):
            if attr.lower() == name.lower():
                return getattr(module, attr)
    raise ValueError(f"RecBole 1.2.1 has no model named {name!r}")


def _inter_file(split_dir: str, name: str, sequential: bool = False) -> str:
    return os.path.join(split_dir, f"{name}.inter" if sequential else f"{name}.train.inter")


def _inter_columns(split_dir: str, name: str, sequential: bool = False) -> list[str]:
    with open(_inter_file(split_dir, name, sequential), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    return [h.split(":")[0] for h in header]


def _reset_logging() -> None:
    """RecBole's init_logger uses logging.basicConfig, which is a no-op once the
    root logger has handlers; clear them so each model gets its own log file."""
    import logging

    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()


def _sequential_config(cols: list[str]) -> dict:
    """Settings of a sequential run: RecBole's own chronological leave-one-out split."""
    if "timestamp" not in cols:
        raise RuntimeError(f"sequential mode needs a timestamp column in the .inter file: {cols}")
    return {
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "MAX_ITEM_LIST_LENGTH": MAX_ITEM_LIST_LENGTH,
        "train_neg_sample_args": None,  # CE loss over all items (RecBole's default loss_type)
        "metrics": ["Hit", "NDCG", "MRR", "Recall"],
    }


def _dump_loo(dataset, valid_data, test_data, path: str) -> int:
    """Write RecBole's test and valid item per user (original tokens), sorted by user."""
    uid, iid = dataset.uid_field, dataset.iid_field
    picked: dict[str, dict[str, str]] = {}
    for part, data in (("test_item", test_data), ("valid_item", valid_data)):
        feat = data._dataset.inter_feat
        users = dataset.id2token(uid, feat[uid].numpy())
        items = dataset.id2token(iid, feat[iid].numpy())
        for u, i in zip(users, items, strict=True):
            picked.setdefault(str(u), {})[part] = str(i)

    def order(u: str):
        return (0, int(u), u) if u.isdigit() else (1, 0, u)

    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("user_id,test_item,valid_item\n")
        for u in sorted(picked, key=order):
            row = picked[u]
            f.write(f"{u},{row.get('test_item', '')},{row.get('valid_item', '')}\n")
    os.replace(tmp, path)
    return len(picked)


def run_one(
    model_name: str,
    split_dir: str,
    workdir: str,
    verbose: bool,
    sequential: bool = False,
    dump: str | None = None,
    epochs: int = 300,
    resume: bool = False,
) -> dict:
    import logging

    import torch

    torch.set_num_threads(int(os.environ.get("RECBOLE_THREADS", "2")))

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import ModelType, get_trainer, init_logger, init_seed

    model_cls = _resolve_model(model_name)
    model_name = model_cls.__name__
    if getattr(model_cls, "type", None) == ModelType.SEQUENTIAL and not sequential:
        raise RuntimeError(
            "sequential model: RecBole cannot build item sequences from "
            "pre-split benchmark files (needs its own LS split: use --sequential)"
        )

    split_dir = os.path.abspath(split_dir)
    name = os.path.basename(split_dir.rstrip("/"))
    cols = _inter_columns(split_dir, name, sequential)
    config_dict = {
        "data_path": os.path.dirname(split_dir),
        "benchmark_filename": PARTS,
        # split is given by the files; RecBole ignores eval_args.split then
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision", "MAP"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "use_gpu": False,
        "seed": 2020,
        "reproducibility": True,
        "load_col": {"inter": cols},
        "show_progress": False,
        "epochs": epochs,
        "stopping_step": 10,
        "checkpoint_dir": os.path.join(workdir, "saved"),
    }
    if sequential:  # the whole .inter file; RecBole splits it itself
        del config_dict["benchmark_filename"]
        config_dict.update(_sequential_config(cols))
    config = Config(model=model_name, dataset=name, config_dict=config_dict)
    # RecBole hard-wires a dataset named "ml-100k" to its bundled example copy
    # (Config._set_default_parameters ignores data_path); point it at the split.
    config["data_path"] = split_dir
    init_seed(config["seed"], config["reproducibility"])
    _reset_logging()
    init_logger(config)
    logger = logging.getLogger()
    if not verbose:  # keep RecBole's log file, drop its console handler
        for h in list(logger.handlers):
            if type(h) is logging.StreamHandler:
                logger.removeHandler(h)
    log_file = next((h.baseFilename for h in logger.handlers if hasattr(h, "baseFilename")), None)
    logger.info(config)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_data = time.perf_counter() - t0
    n_dumped = _dump_loo(dataset, valid_data, test_data, dump) if sequential and dump else None

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = model_cls(config, train_data._dataset).to(config["device"])
    logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    resumed_from = None
    if resume:  # continue an interrupted run from its last best checkpoint
        import glob

        ckpts = glob.glob(os.path.join(workdir, "saved", f"{model_name}-*.pth"))
        if ckpts:
            resumed_from = max(ckpts, key=os.path.getmtime)
            trainer.resume_checkpoint(resumed_from)
    start_epoch = int(getattr(trainer, "start_epoch", 0))

    t1 = time.perf_counter()
    _, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - t1
    if best_valid_result is None and resumed_from:  # no gain after resuming
        best_valid_result = trainer.evaluate(valid_data, load_best_model=True, show_progress=False)
    t2 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_s = time.perf_counter() - t2
    logger.info(f"best valid: {best_valid_result}")
    logger.info(f"test result: {test_result}")

    epochs_run = start_epoch + len(getattr(trainer, "train_loss_dict", {}) or {})
    out = {
        "model": model_name,
        "test": {k.lower(): float(v) for k, v in test_result.items()},
        "valid": {k.lower(): float(v) for k, v in (best_valid_result or {}).items()},
        "seconds": round(fit_s, 2),
        "data_seconds": round(t_data, 2),
        "test_seconds": round(test_s, 2),
        "epochs_run": epochs_run,
        "stopped_early": bool(epochs_run and epochs_run < config["epochs"])
        if config["MODEL_TYPE"] != ModelType.TRADITIONAL
        else False,
        "log_file": log_file,
    }
    if n_dumped is not None:
        out["loo_users"] = n_dumped
    if resumed_from:
        out["resumed_from"] = {"checkpoint": os.path.basename(resumed_from), "epoch": start_epoch}
    if config["MODEL_TYPE"] != ModelType.TRADITIONAL and epochs_run:
        # early_stopping counts evaluations without improvement in cur_step
        out["best_epoch"] = epochs_run - 1 - trainer.cur_step * config["eval_step"]
    # drop the checkpoint: it is only needed for load_best_model above
    with contextlib.suppress(OSError):
        os.remove(trainer.saved_model_file)
    return out


def child_main(args) -> int:
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    try:
        res = run_one(
            args.single,
            args.split_dir,
            args.workdir,
            args.verbose,
            sequential=args.sequential,
            dump=args.dump,
            epochs=args.epochs,
            resume=args.resume,
        )
        payload = {"ok": True, "result": res}
    except Exception as e:  # recorded as missing by the parent
        import traceback

        traceback.print_exc()
        msg = f"{type(e).__name__}: {e}"
        if isinstance(e, AttributeError) and "_update" in str(e):
            import scipy

            msg += (
                f" (RecBole 1.2.1 calls scipy dok_matrix._update, removed in "
                f"SciPy >= 1.13; this venv has SciPy {scipy.__version__})"
            )
        payload = {"ok": False, "error": msg}
    with open(args.single_out, "w", encoding="utf-8") as f:
        json.dump(payload, f)
    return 0


# --------------------------------------------------------------------------- #
# driver
# --------------------------------------------------------------------------- #
def run_all(args) -> dict:
    import recbole  # version check only

    split_dir = os.path.abspath(args.split_dir)
    name = os.path.basename(split_dir.rstrip("/"))
    for part in [None] if args.sequential else PARTS:
        p = os.path.join(split_dir, f"{name}.inter" if part is None else f"{name}.{part}.inter")
        if not os.path.isfile(p):
            sys.exit(f"recbole_run: missing {p}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    os.makedirs(args.workdir, exist_ok=True)
    result = {
        "recbole_version": recbole.__version__,
        "split": split_dir,
        "models": {},
        "missing": {},
    }
    if args.sequential:
        result["protocol"] = {
            "eval_args": _sequential_config(["timestamp"])["eval_args"],
            "MAX_ITEM_LIST_LENGTH": MAX_ITEM_LIST_LENGTH,
            "loss": "CE (train_neg_sample_args: None)",
            "loo_items": args.dump,
        }
    t_all = time.perf_counter()
    for m in models:
        print(f"[recbole] {m}: running ...", flush=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{m}-", suffix=".json", dir=args.workdir)
        os.close(fd)
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            split_dir,
            "--single",
            m,
            "--single-out",
            tmp,
            "--workdir",
            args.workdir,
        ] + (["--verbose"] if args.verbose else [])
        if args.sequential:
            cmd += ["--sequential"] + (["--dump", args.dump] if args.dump else [])
        if args.epochs != 300:
            cmd += ["--epochs", str(args.epochs)]
        if args.resume:
            cmd += ["--resume"]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=args.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        wall = time.perf_counter() - t0
        if args.verbose:
            sys.stdout.write(proc.stdout)
        payload = None
        try:
            with open(tmp, encoding="utf-8") as f:
                payload = json.load(f) if os.path.getsize(tmp) else None
        finally:
            os.remove(tmp)
        if payload and payload.get("ok"):
            r = payload["result"]
            r["wall_seconds"] = round(wall, 2)
            m = r.pop("model", m)  # RecBole's class name, e.g. itemknn -> ItemKNN
            result["models"][m] = r
            t = r["test"]
            print(
                f"[recbole] {m}: test ndcg@10={t.get('ndcg@10'):.4f} "
                f"recall@10={t.get('recall@10'):.4f} hit@10={t.get('hit@10'):.4f}  "
                f"fit {r['seconds']:.1f}s (process {wall:.1f}s, epochs {r['epochs_run']})",
                flush=True,
            )
        else:
            if payload:
                reason = payload["error"]
            else:
                rc = proc.returncode
                how = (
                    f"killed by signal {signal.Signals(-rc).name}"
                    if rc < 0
                    else f"exited with code {rc}"
                )
                tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
                reason = f"RecBole process {how} (output tail: {tail})"
            result["missing"][m] = reason
            print(f"[recbole] {m}: MISSING: {reason}", flush=True)
            if not args.verbose:
                sys.stdout.write("\n".join(proc.stdout.splitlines()[-20:]) + "\n")
    result["total_seconds"] = round(time.perf_counter() - t_all, 2)
    return result


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def render_table(recbole_res: dict, lmrec_res: dict | None) -> str:
    rb_models = recbole_res.get("models", {})
    rb_missing = recbole_res.get("missing", {})
    head_names = ["Recall@10", "NDCG@10", "MRR@10", "Hit@10", "Precision@10"]
    lines = []
    if lmrec_res is None:
        lines.append("| model | " + " | ".join(head_names) + " | fit s |")
        lines.append("|---" * (len(head_names) + 2) + "|")
        for m, r in rb_models.items():
            t = r.get("test", {})
            lines.append(
                f"| {m} | "
                + " | ".join(_fmt(t.get(k)) for k in TABLE_METRICS)
                + f" | {r.get('seconds', 0):.1f} |"
            )
        for m, why in rb_missing.items():
            lines.append(
                f"| {m} | "
                + " | ".join("—" for _ in TABLE_METRICS)
                + f" | missing: {why.splitlines()[0][:80]} |"
            )
        return "\n".join(lines)

    lm_models = lmrec_res.get("models", {})
    # case-insensitive pairing; a model only one side has gets its own row
    rows: dict[str, dict] = {}
    for m in list(rb_models) + list(rb_missing):
        rows.setdefault(m.lower(), {"name": m})["rb"] = m
    for m in lm_models:
        rows.setdefault(m.lower(), {"name": m})["lm"] = m
    cols = []
    for h in head_names:
        cols += [f"{h} RecBole", f"{h} lmrec"]
    lines.append("| model | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for row in rows.values():
        rb = rb_models.get(row.get("rb"), {}).get("test") if row.get("rb") else None
        lm = lm_models.get(row.get("lm"), {}).get("test") if row.get("lm") else None
        cells = []
        for k in TABLE_METRICS:
            if rb is not None:
                cells.append(_fmt(rb.get(k)))
            elif row.get("rb") in rb_missing:
                cells.append("missing")
            else:
                cells.append("—")
            cells.append(_fmt(lm.get(k)) if lm is not None else "—")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    notes = [f"- RecBole {m} missing: {why.splitlines()[0]}" for m, why in rb_missing.items()]
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("split_dir", nargs="?")
    ap.add_argument(
        "--models",
        default=None,
        help=f"default {DEFAULT_MODELS}; with --sequential {DEFAULT_SEQ_MODELS}",
    )
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="SPLIT_DIR is an unsplit atomic dataset; RecBole splits it by "
        "chronological leave-one-out (for sequential models)",
    )
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    ap.add_argument(
        "--epochs",
        type=int,
        default=300,
        help="most training epochs (RecBole's default 300; early stopping after 10 without gain)",
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue each model from its newest checkpoint in WORKDIR/saved "
        "(an interrupted run keeps the checkpoint of its best epoch)",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--lmrec", default=None, help="lmrec results JSON to compare with")
    ap.add_argument(
        "--workdir", default=None, help="where RecBole writes log/, log_tensorboard/, saved/"
    )
    ap.add_argument("--verbose", action="store_true", help="show RecBole's own logging")
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="do not run; print the table for an existing --out file",
    )
    ap.add_argument("--single", help=argparse.SUPPRESS)
    ap.add_argument("--single-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    args.workdir = os.path.abspath(args.workdir or os.path.join(here, ".recbole-work"))
    if args.models is None:
        args.models = DEFAULT_SEQ_MODELS if args.sequential else DEFAULT_MODELS

    if args.single:
        return child_main(args)

    if args.table_only:
        if not args.out:
            ap.error("--table-only needs --out")
        with open(args.out, encoding="utf-8") as f:
            res = json.load(f)
    else:
        if not args.split_dir:
            ap.error("SPLIT_DIR is required")
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        name = os.path.basename(os.path.abspath(args.split_dir).rstrip("/"))
        default_out = f"recbole-seq-{name}.json" if args.sequential else f"recbole-{name}.json"
        out = os.path.abspath(args.out or os.path.join(args.workdir, default_out))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if args.sequential:  # RecBole's LOO picks, next to the results
            args.dump = os.path.splitext(out)[0] + ".loo.csv"
        res = run_all(args)
        with open(out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
        print(f"[recbole] wrote {out} (total {res['total_seconds']:.1f}s)", flush=True)

    lm = None
    if args.lmrec:
        with open(args.lmrec, encoding="utf-8") as f:
            lm = json.load(f)
    print()
    print(render_table(res, lm))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""LLM generation on ML-100K: grounding, leave-one-out accuracy, faithfulness, speed.

Chronological leave-one-out split (RecBole ``LS: valid_and_test``, ``order: TO``). For each
test user the history is their train and validation items, oldest first; the target is the
last item. Every method ranks among all items the user has not had, for the same users:

- ``pop``: most popular items (train counts);
- ``text``: the `text` model (MiniLM) fitted on train, queried with the history
  (`recommend_for`);
- ``llm:<backend>`` (a packaged model in process, or ``openai:<model>``: the same model
  behind llama-cpp-python's OpenAI-compatible server on loopback): `DirectGenerator` in
  ``candidates`` mode: ``text`` shortlists 20 unseen items, numbered; the LLM answers with
  10 numbers (held to the shortlist numbers token by token for llama-cpp models, by a GBNF
  grammar through the server; ``--batch`` users per pass); grounding drops anything not
  real, not shortlisted, seen or duplicated, and the list is topped up in ``text`` order.

Reported per backend: Hit@10 / NDCG@10, RecLM-eval grounding error rates of the raw
proposals and of the shipped lists, the share of proposals that grounding kept, tokens/s of
the generation calls, seconds per user; then for ``--explain-users`` users the top-5 list is
explained in English and in Chinese (alternating users): time per list, the share of LLM
drafts that failed the faithfulness check, and sample sentences.

    python benchmarks/bench_llm.py [--backends template,smollm2-135m,openai:smollm2-135m]
        [--users N] [--qwen-users N] [--explain-users N] [--batch N] [--append-results]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from common import append_results, log, machine_info, markdown_table
from tqdm.auto import tqdm

from lmrec.data.fetch import load_builtin
from lmrec.data.schema import ITEM, TIMESTAMP, USER
from lmrec.data.splits import make_split
from lmrec.llm.backends import BackendConfig, make_backend
from lmrec.llm.evidence import EvidenceBuilder
from lmrec.llm.explain import catalog_vocabulary, explain_list
from lmrec.llm.generate import DirectGenerator, GenerateConfig, GeneratedList, GenerateRequest
from lmrec.llm.grounding import grounding_error_rates
from lmrec.llm.types import Backend
from lmrec.models import create_model
from lmrec.models.base import Recommender

K = 10
EXPLAIN_K = 5


@dataclass
class Run:
    """What one method produced over the users."""

    name: str
    hits: list[float] = field(default_factory=list)
    ndcgs: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    raw: list[list[str]] = field(default_factory=list)
    final: list[list[str]] = field(default_factory=list)
    shortlists: list[list[str]] = field(default_factory=list)
    histories: list[list[str]] = field(default_factory=list)
    kept: int = 0
    proposed: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    calls: int = 0
    gen_seconds: float = 0.0
    fallbacks: int = 0

    def add(self, items: Sequence[str], target: str) -> None:
        rank = list(items[:K]).index(target) + 1 if target in items[:K] else 0
        self.hits.append(1.0 if rank else 0.0)
        self.ndcgs.append(1.0 / math.log2(rank + 1) if rank else 0.0)


def histories(split: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per test user: train + valid items oldest first, and the test item."""
    fitted = split.fitted().interactions
    order = fitted.sort_values([USER, TIMESTAMP], kind="stable") if TIMESTAMP in fitted else fitted
    hist = {str(u): [str(i) for i in g[ITEM]] for u, g in order.groupby(USER, sort=False)}
    test = {
        str(u): str(i)
        for u, i in zip(split.test.interactions[USER], split.test.interactions[ITEM], strict=True)
    }
    return hist, test


def run_baselines(
    text: Recommender, users: list[str], hist: dict[str, list[str]], test: dict[str, str]
) -> list[Run]:
    pop_order = [str(i) for i in text.items.to_ids(np.argsort(-text.popularity(), kind="stable"))]
    pop, txt = Run("pop"), Run("text")
    for u in tqdm(users, desc="baselines", leave=False):
        seen = set(hist[u])
        pop.add([i for i in pop_order[: K + len(seen)] if i not in seen][:K], test[u])
        t0 = time.perf_counter()
        ranked = text.recommend_for(history=hist[u], k=K)  # type: ignore[attr-defined]
        txt.seconds.append(time.perf_counter() - t0)
        txt.add([str(i) for i in ranked[ITEM]], test[u])
    return [pop, txt]


def run_llm(
    name: str,
    backend: Backend,
    text: Recommender,
    users: list[str],
    hist: dict[str, list[str]],
    test: dict[str, str],
    batch: int = 1,
) -> tuple[Run, DirectGenerator]:
    gen = DirectGenerator(text, backend, config=GenerateConfig(mode="candidates"))
    run = Run(f"llm:{name}")
    outs: list[GeneratedList] = []
    for start in tqdm(range(0, len(users), batch), desc=f"generate {name}", leave=False):
        group = users[start : start + batch]
        outs += gen.generate_many([GenerateRequest(hist[u], k=K) for u in group])
    for u, out in zip(users, outs, strict=True):
        run.add(out.items, test[u])
        run.seconds.append(out.seconds)
        run.raw.append(out.proposals)
        run.final.append(out.items)
        run.histories.append(hist[u])
        run.shortlists.append(out.shortlist)
        run.proposed += len(out.proposals)
        run.kept += len(out.grounding.items)
        if out.generation is not None:
            run.tokens += out.generation.completion_tokens
            run.prompt_tokens += out.generation.prompt_tokens
            run.calls += 1
            run.gen_seconds += out.generation.seconds
            run.fallbacks += int(out.generation.fallback)
    return run, gen


def speed(backend: Backend) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of a backend on a fixed prompt, 3 runs each."""
    from lmrec.llm.types import Message

    story = [Message("user", "Write a long story about a cat who learns to fly. " * 20)]
    backend.generate(story, max_tokens=1)  # load the model
    pre, dec = [], []
    for _ in range(3):
        one = backend.generate(story, max_tokens=1)
        many = backend.generate(story, max_tokens=129)
        pre.append(one.prompt_tokens / one.seconds)
        dec.append((many.completion_tokens - 1) / max(many.seconds - one.seconds, 1e-9))
    return statistics.median(pre), statistics.median(dec)


def explain_runs(
    name: str,
    backend: Backend,
    builder: EvidenceBuilder,
    vocabulary: Any,
    lists: list[tuple[str, list[str]]],
    hist: dict[str, list[str]],
    table: Any,
) -> dict[str, Any]:
    times: list[float] = []
    drafts = failed = shipped_llm = unfaithful = 0
    samples: dict[str, list[tuple[str, str]]] = {"en": [], "zh": []}
    for n, (u, items) in enumerate(tqdm(lists, desc=f"explain {name}", leave=False)):
        lang = "zh" if n % 2 else "en"
        t0 = time.perf_counter()
        out = explain_list(
            builder, None, items[:EXPLAIN_K], backend, lang, vocabulary, history=hist[u]
        )
        times.append(time.perf_counter() - t0)
        for iid, ex in zip(items[:EXPLAIN_K], out, strict=True):
            unfaithful += int(not ex.faithful)
            if ex.draft is not None and ex.draft.strip() and ex.backend != "template":
                drafts += 1
                failed += int(ex.source == "template")
            shipped_llm += int(ex.source == "llm")
            if len(samples[lang]) < 5 and (ex.source == "llm" or n >= len(lists) - 2):
                title = str(table.loc[iid, "title"]) if iid in table.index else iid
                samples[lang].append((f"user {u}, {title} ({ex.source})", ex.text))
    return {
        "lists": len(lists),
        "median_s": statistics.median(times) if times else float("nan"),
        "p90_s": float(np.quantile(times, 0.9)) if times else float("nan"),
        "drafts": drafts,
        "failed": failed,
        "shipped_llm": shipped_llm,
        "shipped": len(lists) * EXPLAIN_K,
        "unfaithful_shipped": unfaithful,
        "samples": samples,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="template,smollm2-135m,qwen2.5-0.5b")
    p.add_argument("--users", type=int, default=0, help="test users (0: all)")
    p.add_argument("--qwen-users", type=int, default=0, help="users for qwen (0: as --users)")
    p.add_argument("--explain-users", type=int, default=20)
    p.add_argument(
        "--batch", type=int, default=4, help="users per LLM pass (generate_many); 1: one by one"
    )
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--append-results", action="store_true")
    args = p.parse_args()

    ds = load_builtin("ml-100k")
    split = make_split(ds, "loo")
    hist, test = histories(split)
    everyone = sorted(test, key=int)
    rng = np.random.default_rng(args.seed)
    users = (
        everyone
        if not args.users
        else sorted(rng.choice(everyone, args.users, replace=False).tolist(), key=int)
    )
    log(f"{len(users)} of {len(everyone)} test users")
    t0 = time.perf_counter()
    text = create_model("text").fit(split.train)
    log(f"text fitted in {time.perf_counter() - t0:.1f} s")
    runs = run_baselines(text, users, hist, test)
    table = text.item_table
    assert table is not None
    builder = EvidenceBuilder(
        table, split.fitted().interactions, getattr(text, "item_vectors", None), like_threshold=None
    )
    vocabulary = catalog_vocabulary(table)
    explained: dict[str, dict[str, Any]] = {}
    errors: dict[str, dict[str, float]] = {}
    sub_users: dict[str, list[str]] = {}
    speeds: dict[str, tuple[float, float]] = {}
    servers = contextlib.ExitStack()
    for spec in args.backends.split(","):
        if spec == "template":
            cfg = BackendConfig(kind="template")
        elif spec.startswith("openai:"):  # llama-cpp-python's own server on loopback
            url = servers.enter_context(llama_server(spec.removeprefix("openai:")))
            cfg = BackendConfig(kind="openai", base_url=url, model="local", timeout_s=120.0)
        else:
            cfg = BackendConfig(kind="llama-cpp", model=spec, timeout_s=60.0 * args.batch)
        backend = make_backend(cfg)
        these = users
        if spec.startswith("qwen") and args.qwen_users:
            these = sorted(
                rng.choice(users, min(args.qwen_users, len(users)), replace=False).tolist(), key=int
            )
        sub_users[spec] = these
        if spec != "template":
            speeds[spec] = speed(backend)
            log(
                f"{spec}: prompt {speeds[spec][0]:.0f} tok/s, "
                f"generation {speeds[spec][1]:.1f} tok/s"
            )
        log(f"{spec}: generating for {len(these)} users")
        run, gen = run_llm(spec, backend, text, these, hist, test, args.batch)
        runs.append(run)
        errors[spec] = grounding_error_rates(
            run.raw, run.final, gen.catalog, run.histories, run.shortlists
        )
        lists = list(zip(these, run.final, strict=True))[: args.explain_users]
        explained[spec] = explain_runs(spec, backend, builder, vocabulary, lists, hist, table)
        log(
            f"{spec}: hit {np.mean(run.hits):.4f} ndcg {np.mean(run.ndcgs):.4f} "
            f"explain median {explained[spec]['median_s']:.2f} s"
        )
    servers.close()
    report(runs, errors, explained, sub_users, users, args, speeds)


@contextlib.contextmanager
def llama_server(model: str) -> Iterator[str]:
    """``python -m llama_cpp.server`` for a packaged model (or .gguf) on a free loopback port."""
    import socket
    import subprocess
    import sys
    import tempfile

    import httpx

    from lmrec.llm.backends import resolve_model

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model(model))]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as out:  # a file, not a pipe: the server logs a lot
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"llama_cpp.server did not start ({proc.poll()})")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            log(f"llama_cpp.server with {model} on {url}")
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def report(
    runs: list[Run],
    errors: dict[str, dict[str, float]],
    explained: dict[str, dict[str, Any]],
    sub_users: dict[str, list[str]],
    users: list[str],
    args: argparse.Namespace,
    speeds: dict[str, tuple[float, float]],
) -> None:
    rows = []
    base = {r.name: r for r in runs}
    for r in runs:
        spec = r.name.removeprefix("llm:")
        n = len(r.hits)
        text_sub = [
            h
            for u, h in zip(users, base["text"].ndcgs, strict=True)
            if u in set(sub_users.get(spec, users))
        ]
        rows.append(
            [
                r.name,
                n,
                f"{np.mean(r.hits):.4f}",
                f"{np.mean(r.ndcgs):.4f}",
                f"{np.mean(r.ndcgs) / np.mean(text_sub):.3f}x"
                if text_sub and np.mean(text_sub)
                else "-",
                f"{statistics.median(r.seconds):.3f}" if r.seconds else "-",
                f"{r.prompt_tokens / r.calls:.0f} / {r.tokens / r.calls:.0f}" if r.calls else "-",
                f"{r.kept / r.proposed:.3f}" if r.proposed else "-",
            ]
        )
    out = [
        markdown_table(
            [
                "method",
                "users",
                "Hit@10",
                "NDCG@10",
                "NDCG vs text (same users)",
                "median s/user",
                "prompt / output tokens per call",
                "proposals kept",
            ],
            rows,
        )
    ]
    err_rows = []
    for spec, e in errors.items():
        err_rows.append(
            [
                spec,
                int(e["users"]),
                *(f"{e[f'raw_{m}_error_rate']:.4f}" for m in ("candidate", "history", "duplicate")),
                f"{e['raw_unmatched_rate']:.4f}",
                *(
                    f"{e[f'final_{m}_error_rate']:.4f}"
                    for m in ("candidate", "history", "duplicate")
                ),
            ]
        )
    out.append(
        "Grounding error rates (RecLM-eval: share of users whose list has an item outside "
        "the candidates / from the history / twice), raw LLM proposals vs shipped lists:\n\n"
        + markdown_table(
            [
                "backend",
                "users",
                "raw cand.",
                "raw hist.",
                "raw dup.",
                "raw unmatched (per proposal)",
                "shipped cand.",
                "shipped hist.",
                "shipped dup.",
            ],
            err_rows,
        )
    )
    ex_rows = []
    for spec, e in explained.items():
        ex_rows.append(
            [
                spec,
                e["lists"],
                f"{e['median_s']:.2f}",
                f"{e['p90_s']:.2f}",
                e["drafts"],
                f"{e['failed'] / e['drafts']:.3f}" if e["drafts"] else "-",
                f"{e['shipped_llm']}/{e['shipped']}",
                f"{1 - e['unfaithful_shipped'] / e['shipped']:.3f}" if e["shipped"] else "-",
            ]
        )
    out.append(
        f"Explaining a top-{EXPLAIN_K} list (alternating English / Chinese users):\n\n"
        + markdown_table(
            [
                "backend",
                "lists",
                "median s/list",
                "p90 s/list",
                "LLM drafts",
                "drafts failing the check",
                "shipped from the LLM",
                "shipped passing the check",
            ],
            ex_rows,
        )
    )
    out.append(
        "Speed of each local model (a 20-sentence prompt; median of 3):\n\n"
        + markdown_table(
            ["model", "prompt tokens/s", "generated tokens/s"],
            [[m, f"{a:.0f}", f"{b:.1f}"] for m, (a, b) in speeds.items()],
        )
    )
    samples = []
    for spec, e in explained.items():
        if spec == "template":
            continue
        for lang in ("en", "zh"):
            for where, txt in e["samples"][lang]:
                samples.append(f'{spec} [{lang}] {where}: "{txt}"')
    text = "\n\n".join(out)
    print(text)
    print("\n".join(samples))
    if args.append_results:
        notes = [
            "Leave-one-out (chronological) on ML-100K; history = train + valid items; all "
            "methods rank among every unseen item for the same users.",
            "Direct generation shortlists 20 items with `text` (numbered; the LLM answers "
            "with numbers, held to the shortlist token by token), so its Hit@10 is bounded by "
            "text's Hit@20; grounding tops lists up in text order.",
            f"LLM users are asked {args.batch} per pass (`DirectGenerator.generate_many`): "
            "'median s/user' is a pass's time divided by its users.",
            *[f"Sample {s}" for s in samples],
        ]
        append_results(
            "LLM direct generation, grounding and explanations, leave-one-out (issue 6)",
            text,
            notes,
            machine_info(),
        )


if __name__ == "__main__":
    main()

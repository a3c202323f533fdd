"""Explaining a top-5 list with a local LLM: time per list, faithfulness, samples.

For each test user of the chronological leave-one-out split of ML-100K (history = train +
valid items), the `text` model's top-5 unseen items are explained in English or Chinese
(alternating users) by `explain_list`, two ways, on the same lists in the same run:

- ``parallel`` (the default path): one `generate_many` call per list: the fixed instructions
  and worked examples stay in the KV cache between lists, the five evidence blocks are read
  in one batch, and the five sentences are decoded together;
- ``one by one`` (the baseline): the same prompts, one `generate` call per item, each from
  an empty cache (the path before parallel decoding).

Reported: median and p90 seconds per list, the share of LLM drafts that the faithfulness
check refused, the share of shipped explanations passing the check (must be 1), samples.

    python benchmarks/bench_explain.py [--backends smollm2-135m,qwen2.5-0.5b] [--lists 20]
        [--baseline one-by-one|first] [--append-results]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from bench_llm import histories
from common import append_results, log, machine_info, markdown_table
from tqdm.auto import tqdm

from lmrec.data.fetch import load_builtin
from lmrec.data.schema import ITEM
from lmrec.data.splits import make_split
from lmrec.llm.backends import BackendConfig, make_backend
from lmrec.llm.evidence import EvidenceBuilder
from lmrec.llm.explain import Explanation, catalog_vocabulary, explain_list
from lmrec.llm.types import Backend, Generation, Message
from lmrec.models import create_model

K = 5


class OneByOne:
    """A backend seen without its ``generate_many``: `explain_list` then asks item by item."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.name = inner, inner.name
        # asked in the same languages as the parallel way (a model that does not write one
        # ships its templates at once both ways)
        self.languages = getattr(inner, "languages", None)

    def generate(self, messages: Sequence[Message], **kwargs: Any) -> Generation:
        return self.inner.generate(messages, **kwargs)


def run(
    backend: Any,
    builder: EvidenceBuilder,
    vocab: Any,
    lists: list[tuple[str, list[str]]],
    hist: Any,
) -> tuple[list[float], list[list[Explanation]]]:
    times, shipped = [], []
    for n, (u, items) in enumerate(tqdm(lists, desc=backend.name, leave=False)):
        lang = "zh" if n % 2 else "en"
        t0 = time.perf_counter()
        out = explain_list(builder, None, items, backend, lang, vocab, history=hist[u])
        times.append(time.perf_counter() - t0)
        shipped.append(out)
    return times, shipped


def summarise(name: str, times: list[float], shipped: list[list[Explanation]]) -> dict[str, Any]:
    flat = [e for lst in shipped for e in lst]
    drafts = [e for e in flat if e.draft is not None and e.draft.strip()]
    by_lang = {
        lang: statistics.median(
            [t for t, lst in zip(times, shipped, strict=True) if lst and lst[0].language == lang]
            or [float("nan")]
        )
        for lang in ("en", "zh")
    }
    return {
        "name": name,
        "lists": len(times),
        "median": statistics.median(times),
        "median_en": by_lang["en"],
        "median_zh": by_lang["zh"],
        "p90": float(np.quantile(times, 0.9)),
        "drafts": len(drafts),
        "refused": sum(e.source == "template" for e in drafts),
        "from_llm": sum(e.source == "llm" for e in flat),
        "shipped": len(flat),
        "faithful": sum(e.faithful for e in flat) / max(len(flat), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="smollm2-135m,qwen2.5-0.5b")
    p.add_argument("--lists", type=int, default=20, help="top-5 lists per backend and way")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument(
        "--baseline",
        choices=("one-by-one", "first"),
        default="one-by-one",
        help="one-by-one: each backend also explains one item at a time (slow); first: the "
        "first backend's parallel run is the baseline of the others (e.g. two quantizations)",
    )
    p.add_argument("--note", action="append", default=[], help="extra note for RESULTS.md")
    p.add_argument("--append-results", action="store_true")
    args = p.parse_args()

    machine = machine_info()
    split = make_split(load_builtin("ml-100k"), "loo")
    hist, test = histories(split)
    rng = np.random.default_rng(args.seed)
    users = sorted(rng.choice(sorted(test), args.lists, replace=False).tolist(), key=int)
    text = create_model("text").fit(split.train)
    lists = [
        (u, [str(i) for i in text.recommend_for(history=hist[u], k=K)[ITEM]])  # type: ignore[attr-defined]
        for u in users
    ]
    table = text.item_table
    assert table is not None
    builder = EvidenceBuilder(
        table, split.fitted().interactions, getattr(text, "item_vectors", None), like_threshold=None
    )
    vocab = catalog_vocabulary(table)
    rows, notes, samples = [], [], []
    first: dict[str, Any] | None = None
    for spec in args.backends.split(","):
        backend = make_backend(BackendConfig(kind="llama-cpp", model=spec, timeout_s=120))
        explain_list(builder, None, lists[0][1], backend, "en", vocab, history=hist[lists[0][0]])
        explain_list(builder, None, lists[0][1], backend, "zh", vocab, history=hist[lists[0][0]])
        par = summarise(f"{spec}: parallel", *run(backend, builder, vocab, lists, hist))
        if args.baseline == "one-by-one":
            one_t, one_s = run(OneByOne(backend), builder, vocab, lists, hist)
            one = summarise(f"{spec}: one by one", one_t, one_s)
            runs = [par, one]
        else:
            first = first or par  # the first backend's parallel run
            one, runs = first, [par]
        for r in runs:
            rows.append(
                [
                    r["name"],
                    r["lists"],
                    f"{r['median']:.2f}",
                    f"{r['median_en']:.2f}",
                    f"{r['median_zh']:.2f}",
                    f"{r['p90']:.2f}",
                    f"{r['median'] / one['median']:.3f}x",
                    r["drafts"],
                    f"{r['refused'] / max(r['drafts'], 1):.3f}",
                    f"{r['from_llm']}/{r['shipped']}",
                    f"{r['faithful']:.3f}",
                ]
            )
            log(f"{r['name']}: median {r['median']:.2f} s per list")
        # 5 English and 5 Chinese samples: the first two items of the first six lists
        _, par_shipped = run(backend, builder, vocab, lists[:6], hist)
        taken = {"en": 0, "zh": 0}
        for lst in par_shipped:
            for e in lst[:2]:
                if taken[e.language] == 5:
                    continue
                taken[e.language] += 1
                samples.append(f"Sample {spec} [{e.language}] ({e.source}): {e.text!r}")
                if e.source == "template" and e.draft:
                    refused = "; ".join(e.problems)
                    samples.append(f"  refused draft: {e.draft.strip()!r} ({refused})")
    table_md = markdown_table(
        [
            "backend: way",
            "lists",
            "median s/list",
            "median, English",
            "median, Chinese",
            "p90 s/list",
            "median vs one by one" if args.baseline == "one-by-one" else "median vs first",
            "LLM drafts",
            "drafts refused",
            "shipped from the LLM",
            "shipped passing the check",
        ],
        rows,
    )
    notes += [
        f"Top-{K} lists of the `text` model for {len(users)} random leave-one-out test users of "
        "ML-100K; English and Chinese alternate; target median <= 3 s per list on 2 cores.",
        "Both ways use the same prompts (instructions + two worked examples + the evidence) "
        "and the same faithfulness check; refused drafts ship the template sentence.",
        *samples,
        *args.note,
    ]
    print(table_md)
    for n in notes:
        print("-", n)
    if args.append_results:
        append_results(
            "Explaining a top-5 list: parallel decoding vs one by one (issue 6)"
            if args.baseline == "one-by-one"
            else f"Explaining a top-5 list: {args.backends.replace(',', ' vs ')} (issue 6)",
            table_md,
            notes,
            machine,
        )


if __name__ == "__main__":
    main()

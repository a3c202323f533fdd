"""Shared helpers of the lmrec benchmarks: peak memory, child processes, machine, results file.

Peak memory is the resident set size (RSS) high-water mark of a process, read from
``VmHWM`` in ``/proc/self/status`` (Linux). Each measurement runs in a fresh child process
started with ``multiprocessing``'s ``spawn`` method, so nothing a previous measurement
allocated (or freed into the allocator's cache) is counted. Before the measured call the
child resets its high-water mark to its current RSS (``echo 5 > /proc/self/clear_refs``,
Linux >= 4.0), so ``peak - baseline`` is what the call itself added at its peak. Where the
reset is not possible, the child falls back to ``ru_maxrss`` before/after, which can only
undercount (the result says which method was used).

Units: 1 MB = 10^6 bytes, 1 GB = 10^9 bytes.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
RESULTS_FILE = HERE / "RESULTS.md"
MB = 1e6
GB = 1e9
T = TypeVar("T")


# -- logging ----------------------------------------------------------------------------------
_T0 = time.perf_counter()


def log(msg: str) -> None:
    """A progress line on stderr, prefixed with the seconds since the process started."""
    print(f"[{time.perf_counter() - _T0:8.1f}s] {msg}", file=sys.stderr, flush=True)


# -- memory -----------------------------------------------------------------------------------
def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _maxrss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (kilobytes on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def current_rss() -> int:
    """Current resident set size in bytes (0 where unknown)."""
    rss = _status_bytes("VmRSS")
    return rss if rss is not None else 0


def peak_rss() -> int:
    """RSS high-water mark in bytes (since process start or the last `reset_peak`)."""
    hwm = _status_bytes("VmHWM")
    return hwm if hwm is not None else _maxrss_bytes()


def reset_peak() -> bool:
    """Reset the RSS high-water mark to the current RSS; False where the OS does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PeakMeter:
    """Measures how far RSS rose above its level at `start`, at its highest, during a block.

    Usage: ``m = PeakMeter(); m.start(); work(); m.stop()`` then ``m.delta`` (bytes),
    ``m.peak`` (absolute bytes) and ``m.method``.
    """

    def __init__(self) -> None:
        self.base = 0
        self.peak = 0
        self.delta = 0
        self.method = ""
        self._exact = False
        self._before = 0

    def start(self) -> None:
        gc.collect()
        self.base = current_rss()
        self._exact = reset_peak()
        self._before = peak_rss()
        self.method = "VmHWM reset" if self._exact else "ru_maxrss delta (lower bound)"

    def stop(self) -> None:
        self.peak = peak_rss()
        if self._exact:
            self.delta = max(0, self.peak - self.base)
        else:  # the old high-water mark may hide part of the rise
            self.delta = max(0, self.peak - max(self._before, self.base))


# -- child processes --------------------------------------------------------------------------
class ChildCrashed(RuntimeError):
    """The child process died (e.g. killed for memory) before returning a result."""


def run_in_child(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a fresh ``spawn`` child process and return its result.

    ``fn`` must be importable (a module-level function). Exceptions raised in the child are
    re-raised here; a child that dies raises `ChildCrashed`.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args, **kwargs).result()
        except BrokenProcessPool as e:
            raise ChildCrashed(f"child process died: {e}") from None


# -- machine ----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _ram_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "unknown"


def machine_info() -> dict[str, str]:
    """CPU, cores, RAM, OS, the versions that matter for the numbers, and the current load."""
    import numpy as np
    import pandas as pd
    import scipy

    import lmrec

    ram = _ram_gb()
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if libs:
            blas = ", ".join(
                f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
                for i in libs
            )
    except ImportError:
        pass
    return {
        "CPU": _cpu_model(),
        "cores": f"{_usable_cores()} usable ({os.cpu_count()} online)",
        "RAM": f"{ram:.1f} GB" if ram is not None else "unknown",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "BLAS": blas,
        "lmrec": f"{lmrec.__version__}, git {_git_revision()}",
        "load avg (1/5/15 min) at start": load_average(),
    }


# -- results ----------------------------------------------------------------------------------
def command_line() -> str:
    """How this script was invoked, as a shell command (relative to the current folder)."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are converted with ``str``."""

    def cell(x: object) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    right = [
        any(_numeric(r[j]) for r in rows) and all(_numeric(r[j]) or r[j] == "-" for r in rows)
        for j in range(len(headers))
    ]
    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---:" if r else "---" for r in right) + "|",
    ]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(x: object) -> bool:
    try:
        float(str(x).rstrip("x%").replace(",", ""))
    except ValueError:
        return False
    return True


RESULTS_HEADER = """# lmrec benchmark results

Each run of a script in `benchmarks/` with `--append-results` appends one section below:
a title, the exact command, the date (UTC), the machine (CPU model from `/proc/cpuinfo`,
usable cores, RAM, Python and library versions, BLAS, git revision, and, in newer sections, the
load averages at the start and end of the run: a load above the core count means other work
competed for the CPU), a table, and notes. Sections are not edited afterwards, so older numbers
stay for comparison; compare rows only within a machine and a similar load.
Units: seconds are wall-clock seconds; 1 MB = 10^6 bytes, 1 GB = 10^9 bytes. How each number
is measured is in `benchmarks/README.md`.
"""


def append_results(
    title: str,
    table: str,
    notes: Sequence[str] = (),
    machine: dict[str, str] | None = None,
    path: Path = RESULTS_FILE,
) -> Path:
    """Append a results section (command, UTC date, machine, table, notes) to ``path``."""
    machine = {**(machine or machine_info()), "load avg at end": load_average()}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"\n## {title}\n",
        f"Command: `{command_line()}`  ",
        f"Date: {now}  ",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()) + "\n",
        table + "\n",
    ]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes) + "\n")
    if not path.exists():
        path.write_text(RESULTS_HEADER, encoding="utf-8")
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def format_seconds(s: float | None) -> str:
    """Seconds with precision that suits their size ('-' for None)."""
    if s is None:
        return "-"
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"

"""LightGBM models compiled to native code with lleaves, for one-user ranking latency.

LightGBM's own ``predict`` spends about 35 ns per tree and row; a ranker of ~1,400 trees
scoring 200 candidates takes ~10 ms single-threaded. lleaves (LLVM) compiles the same model
text into straight-line native code that gives the same scores (to ~1e-14) about 9x faster.

It is optional (``pip install 'lmrec[fast]'``): without it, or if compiling fails, LightGBM
predicts. Compiling takes ~30 s for 1,400 trees, so object files are cached (in
``$LMREC_CACHE/lleaves`` and beside a saved model), keyed by the model text, the host CPU and
the lleaves version: native code built for one CPU never runs on another.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger("lmrec.rank")


def available() -> bool:
    """Whether lleaves (and a working llvmlite) can be imported."""
    try:
        import lleaves  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except Exception:  # an llvmlite too new for lleaves fails at import or compile time
        return False
    return True


def cache_key(model_text: str) -> str:
    """Digest of the model text, the host CPU and the lleaves version."""
    import lleaves
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    host = f"{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}"
    version = getattr(lleaves, "__version__", "?")
    digest = hashlib.sha256(f"{model_text}\n{host}\n{version}".encode()).hexdigest()
    return digest[:20]


def default_cache_dir() -> Path:
    from lmrec.encoders.base import default_cache_root

    return default_cache_root() / "lleaves"


class CompiledTrees:
    """A compiled copy of one LightGBM model; `predict` returns None until it is ready.

    Args:
        model_text: The model as LightGBM text (``Booster.model_to_string``).
        cache_dir: Folder of cached object files (default ``$LMREC_CACHE/lleaves``).
    """

    def __init__(self, model_text: str, cache_dir: Path | None = None) -> None:
        self.model_text = model_text
        self.key = cache_key(model_text)
        self.cache_dir = cache_dir or default_cache_dir()
        self._model: object | None = None
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def object_name(self) -> str:
        return f"ranker.{self.key}.o"

    @property
    def ready(self) -> bool:
        return self._model is not None

    def cached(self) -> bool:
        """Whether a compiled object for this model and CPU is in the cache."""
        return (self.cache_dir / self.object_name).is_file()

    def adopt(self, folder: Path) -> None:
        """Take a compiled object saved beside a model into the cache (if it fits this CPU)."""
        src = folder / self.object_name
        if src.is_file() and not self.cached():
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, self.cache_dir / self.object_name)
            except OSError:
                pass

    def compile(self) -> bool:
        """Compile (or load the cached object) now; False if it failed (LightGBM stays)."""
        import lleaves

        try:
            with tempfile.TemporaryDirectory() as tmp:
                text = Path(tmp) / "model.txt"
                text.write_text(self.model_text)
                model = lleaves.Model(model_file=str(text))
                try:
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    obj = self.cache_dir / self.object_name
                except OSError:  # no writable cache: compile without keeping the object
                    obj = Path(tmp) / self.object_name
                model.compile(cache=str(obj))
            self._model = model
            return True
        except Exception as e:  # never fail a fit or a load over an optional speed-up
            self.error = f"{type(e).__name__}: {e}"
            log.warning("could not compile the ranker with lleaves (%s); LightGBM predicts", e)
            return False

    def start(self) -> None:
        """Compile in a background thread (predictions use LightGBM meanwhile)."""
        self._thread = threading.Thread(target=self.compile, name="lmrec-lleaves", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for a background compile; True once ready."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.ready

    def predict(self, x: np.ndarray, n_jobs: int = 1) -> np.ndarray | None:
        """Scores, or None while not compiled."""
        if self._model is None:
            return None
        data = np.ascontiguousarray(x, dtype=np.float64)
        out = self._model.predict(data, n_jobs=n_jobs)  # type: ignore[attr-defined]
        return np.asarray(out, dtype=np.float64)

    def copy_to(self, folder: Path) -> None:
        """Save the compiled object beside a saved model (so loading it needs no compile)."""
        if self.cached():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.cache_dir / self.object_name, folder / self.object_name)

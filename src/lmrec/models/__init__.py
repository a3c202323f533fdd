"""Recommenders, all on the `Recommender` interface."""

from lmrec.models.base import Recommender, create_model, get_model_class, model_names

__all__ = ["Recommender", "create_model", "get_model_class", "model_names"]

"""Recommenders, all on the `Recommender` interface."""

from lmrec.models.base import Recommender, create_model, get_model_class, model_names
from lmrec.models.bpr import BPR
from lmrec.models.ease import EASE
from lmrec.models.implicit_mf import ALS
from lmrec.models.itemknn import ItemKNN
from lmrec.models.popularity import Popularity
from lmrec.models.sasrec import SASRec
from lmrec.models.text import TextRecommender

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "SASRec",
    "TextRecommender",
    "create_model",
    "get_model_class",
    "model_names",
]

"""Recommenders, all on the `Recommender` interface."""

from lmrec.models.base import Recommender, create_model, get_model_class, model_names
from lmrec.models.biased_mf import BiasedMF
from lmrec.models.bpr import BPR
from lmrec.models.ease import EASE
from lmrec.models.fusion import FusionRecommender
from lmrec.models.implicit_mf import ALS
from lmrec.models.itemknn import ItemKNN
from lmrec.models.kg_knn import KGKNN
from lmrec.models.llm import LLMRecommender
from lmrec.models.metadata import MetadataKNN
from lmrec.models.popularity import Popularity
from lmrec.models.sasrec import SASRec
from lmrec.models.text import TextRecommender
from lmrec.models.text_seq import TextSeq
from lmrec.models.two_tower import TwoTower

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "KGKNN",
    "BiasedMF",
    "FusionRecommender",
    "ItemKNN",
    "LLMRecommender",
    "MetadataKNN",
    "Popularity",
    "Recommender",
    "SASRec",
    "TextRecommender",
    "TextSeq",
    "TwoTower",
    "create_model",
    "get_model_class",
    "model_names",
]

"""Configuration of the fusion pipeline: sources, features, ranker, holdout (`models.fusion`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmrec.models.base import ModelConfig
from lmrec.rank.features import FeatureConfig
from lmrec.rank.holdout import Holdout
from lmrec.rank.lgbm import LGBMConfig
from lmrec.rank.mtl import MTLConfig
from lmrec.rank.sources import SourceConfig

DEFAULT_SOURCES = [
    SourceConfig(model="ease", budget=100),
    SourceConfig(model="als", budget=50),
    SourceConfig(model="itemknn", budget=50),
    SourceConfig(model="two-tower", budget=50),
    SourceConfig(model="pop", budget=20),
]


class FusionConfig(ModelConfig):
    """Configuration of `FusionRecommender` (``lmrec fit --model fusion --config x.toml``)."""

    sources: list[SourceConfig] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES), description="Candidate sources."
    )
    features: FeatureConfig = Field(default_factory=FeatureConfig, description="Features.")
    ranker: Literal["auto", "lgbm", "mtl", "blend", "source"] = Field(
        "auto",
        description="Ranker (blend: standardised sum of lgbm and mtl); auto keeps the best on "
        "validation (lgbm without it).",
    )
    source_feature: str | None = Field(
        None, description="With ranker = source: the score column to rank by, e.g. 'ease:z'."
    )
    rating_model: Literal["auto", "lgbm", "mtl"] = Field(
        "auto", description="Rating predictor; auto keeps the lower validation RMSE."
    )
    source_guard: bool = Field(
        True,
        description="Rank by the best single source's score when it beats the ranker on "
        "validation NDCG@10 (a ranker must earn its place).",
    )
    lgbm: LGBMConfig = Field(default_factory=LGBMConfig, description="LightGBM settings.")
    mtl: MTLConfig = Field(default_factory=MTLConfig, description="Multi-task MLP settings.")
    holdout: Holdout = Field("latest", description="How part B is drawn (latest/random/items).")
    holdout_share: float = Field(0.125, gt=0, lt=1, description="Share of data in part B.")
    folds: int = Field(1, ge=1, le=8, description="(A, B) rounds whose rows are pooled.")
    attributes: bool = Field(True, description="Build item attributes (fields and KG).")
    seed: int = Field(2020, description="Random seed of the holdout.")

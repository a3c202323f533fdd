"""Chinese item text and Chinese requests end to end, through the models (multilingual-e5)."""

from __future__ import annotations

import pandas as pd
import pytest

from lmrec.data.schema import Dataset
from lmrec.models import TextRecommender, TwoTower

ITEMS = {
    "space1": "一部关于太空探险的科幻电影",
    "space2": "宇航员在遥远星系中冒险的科幻片",
    "kids1": "适合孩子的动画喜剧",
    "kids2": "给小朋友看的卡通动画片",
    "romance1": "浪漫爱情故事",
    "romance2": "一对恋人在巴黎的爱情电影",
    "horror1": "恐怖片，午夜的鬼屋里发生了可怕的事情",  # noqa: RUF001 (Chinese comma)
    "cooking1": "教你做家常菜的美食纪录片",
}


@pytest.fixture(scope="module")
def data() -> Dataset:
    items = pd.DataFrame({"item_id": list(ITEMS), "title": list(ITEMS.values())})
    rows = [("u1", "space1"), ("u1", "space2"), ("u2", "romance1"), ("u2", "romance2"),
            ("u3", "kids1"), ("u3", "kids2"), ("u4", "space1"), ("u4", "kids1")]  # fmt: skip
    return Dataset.build(pd.DataFrame(rows, columns=["user_id", "item_id"]), items)


def test_text_model_answers_a_chinese_request(data: Dataset) -> None:
    model = TextRecommender(encoder="e5-small").fit(data)
    assert model.recommend_for(request="我想看一部给孩子看的动画片", k=2)["item_id"].tolist()[
        0
    ] in {"kids1", "kids2"}
    assert model.recommend_for(request="推荐一部吓人的电影", k=1)["item_id"].tolist() == ["horror1"]
    # history of one sci-fi film: the other sci-fi film comes first
    assert model.recommend_for(history=["space1"], k=1)["item_id"].tolist() == ["space2"]


def test_two_tower_serves_chinese_text_and_new_chinese_items() -> None:
    topics = {
        "space": [
            "一部关于太空探险的科幻电影",
            "宇航员在遥远星系中冒险的科幻片",
            "外星人入侵地球的科幻大片",
        ],
        "kids": ["适合孩子的动画喜剧", "给小朋友看的卡通动画片", "会说话的玩具的儿童动画"],
        "love": ["浪漫爱情故事", "一对恋人在巴黎的爱情电影", "青春校园初恋爱情片"],
        "food": ["教你做家常菜的美食纪录片", "厨师比赛的烹饪真人秀", "寻找各地小吃的美食节目"],
    }
    items = pd.DataFrame(
        [(f"{t}{j}", text) for t, texts in topics.items() for j, text in enumerate(texts)],
        columns=["item_id", "title"],
    )
    rows = [(f"{t}-fan{u}", f"{t}{j}") for t in topics for u in range(12) for j in range(3)
            if (u + j) % 3]  # fmt: skip
    data = Dataset.build(pd.DataFrame(rows, columns=["user_id", "item_id"]), items)
    model = TwoTower(encoder="e5-small", dim=32, epochs=30, batch_size=16, learning_rate=0.003,
                     hard_negatives=0, num_threads=1, id_dropout=1.0)  # fmt: skip
    model.fit(data)
    assert set(model.recommend_for(request="我想学做饭", k=3)["item_id"]) == {
        "food0", "food1", "food2"
    }  # fmt: skip
    model.add_items(pd.DataFrame({"item_id": ["food9"], "title": ["教做川菜的烹饪节目"]}))
    recs = model.recommend_for(history=["food0", "food1"], k=2)["item_id"].tolist()
    assert set(recs) == {"food2", "food9"}  # the new Chinese item, from its text alone

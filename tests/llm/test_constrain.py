"""The number-list constraint of batched decoding (pure logic, no model)."""

from __future__ import annotations

import json

import pytest

from lmrec.errors import ConfigError
from lmrec.llm.constrain import NumberListState, OrderSpec, number_list_pieces, valid_number_list
from lmrec.llm.parsing import order_grammar, parse_order_result

SPEC = OrderSpec(n=12, k=3)


@pytest.mark.parametrize(
    "text",
    ["", "1", "1", "12", "3,", "3, ", "3, 1", "3, 1,", "3, 1, 12", "3, 1, 12]", "7]", "1, 1"[:3]],
)
def test_valid_prefixes_are_accepted(text: str) -> None:
    assert valid_number_list(text, SPEC)


@pytest.mark.parametrize(
    "text",
    [
        "0",  # no number 0, no leading zero
        "13",  # above n
        "3, 3",  # a repeat
        "2, 3, 4,",  # a fourth number would exceed k
        "2, 3, 4, 5",
        "]",  # an empty list
        "3]]",
        "3;",
        "3,  4",
        " 3",
        "3, 1] ",
    ],
)
def test_invalid_prefixes_are_refused(text: str) -> None:
    assert not valid_number_list(text, SPEC)


def test_a_partial_number_must_lead_to_an_unused_one() -> None:
    spec = OrderSpec(n=12, k=5)
    assert valid_number_list("1", spec)  # 1, 10, 11, 12
    assert valid_number_list("10, 11, 12, 1", spec)  # 1 itself is still free
    assert not valid_number_list("1, 10, 11, 12, 1", spec)  # k reached, and nothing left


def test_state_walks_tokens_to_a_closed_list_and_refuses_others() -> None:
    pieces = number_list_pieces(
        {0: "1", 1: "2", 2: ", ", 3: "]", 4: "1,", 5: "abc", 6: " ", 7: "]}", 8: ""}
    )
    assert set(pieces) == {0, 1, 2, 3, 4, 6}  # letters, braces and empty pieces are out
    state = NumberListState(OrderSpec(n=2, k=2), pieces)
    assert set(state.allowed()) == {0, 1, 4}  # a digit, or "1," at once
    state.advance(4)
    with pytest.raises(ConfigError, match="does not continue"):
        state.advance(4)  # "1,1," repeats 1 and lacks the space
    state.advance(6)
    assert state.allowed() == [1]  # only 2 is left
    state.advance(1)
    assert state.allowed() == [3] and not state.done
    state.advance(3)
    assert state.done and state.allowed() == [] and state.text == "1, 2]"
    answer = OrderSpec.opening + state.text.rstrip("], ") + OrderSpec.closing
    assert json.loads(answer) == {"order": [1, 2]}
    assert parse_order_result(answer, 2).given == 2


def test_spec_checks_its_range_and_gives_the_same_grammar() -> None:
    assert SPEC.gbnf() == order_grammar(12, 3)
    with pytest.raises(ConfigError):
        OrderSpec(n=0, k=3)
    with pytest.raises(ConfigError):
        OrderSpec(n=5, k=0)

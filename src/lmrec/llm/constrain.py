"""Token-level constraints for batched decoding: an answer that must be a list of numbers.

Direct generation over a shortlist asks the model for ``{"order": [3, 1, 2]}``: up to ``k``
distinct numbers from ``1..n``. One call at a time, a GBNF grammar holds llama.cpp to that
(`OrderSpec.gbnf`). The batched decoder (`lmrec.llm.parallel`) has no grammar engine, so it
writes the fixed opening ``{"order": [`` into the prompt and then lets each sequence choose
only among tokens that keep ``3, 1, 2]`` valid (`NumberListState`). Unlike the grammar, the
state remembers the numbers already written, so no number repeats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lmrec.errors import ConfigError
from lmrec.llm.parsing import MAX_K, order_grammar

#: Characters a piece of a number list may contain.
NUMBER_LIST_CHARS = frozenset("0123456789, ]")


@dataclass(frozen=True)
class OrderSpec:
    """The answer wanted: ``{"order": [...]}`` with 1 to ``k`` distinct numbers in ``1..n``."""

    n: int
    k: int

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_K or self.n < 1:
            raise ConfigError(
                f"need n >= 1 and k between 1 and {MAX_K}, got n={self.n}, k={self.k}"
            )

    #: What the answer starts with (forced, not generated, in batched decoding).
    opening = '{"order": ['
    #: What closes it after the last number.
    closing = "]}"

    def gbnf(self) -> str:
        """The same answer as a GBNF grammar (for one-at-a-time decoding)."""
        return order_grammar(self.n, self.k)


def valid_number_list(text: str, spec: OrderSpec) -> bool:
    """Whether ``text`` can begin (or be) the inside of a valid answer: ``"3, 1, 2]"``.

    Numbers are ``1..n`` without leading zeros, each at most once, separated by ``", "``; at
    most ``min(k, n)`` of them; ``"]"`` ends the list after at least one number.
    """
    most = min(spec.k, spec.n)
    seen: set[int] = set()
    i, size = 0, len(text)
    while i < size:
        j = i
        while j < size and text[j].isdigit():
            j += 1
        digits = text[i:j]
        if not digits or digits[0] == "0":
            return False
        if j == size:  # a number still being written: some unused number must start so
            return (
                any(
                    str(m).startswith(digits) and m not in seen
                    for m in range(int(digits), spec.n + 1)
                    if len(str(m)) >= len(digits)
                )
                and len(seen) < most
            )
        number = int(digits)
        if number > spec.n or number in seen:
            return False
        seen.add(number)
        rest = text[j:]
        if rest.startswith("]"):
            return len(rest) == 1
        if len(seen) >= most:
            return False  # only "]" may follow the last number
        for sep in (", ", ","):
            if rest == sep[: len(rest)] and len(rest) <= len(sep):
                return True  # the separator is still being written
        if not rest.startswith(", "):
            return False
        i = j + 2
    return True


class NumberListState:
    """One sequence's progress through a number-list answer, over a model's token pieces.

    Args:
        spec: The answer wanted.
        pieces: Text of each token that may appear in such an answer (token ID -> text);
            see `number_list_pieces`.
    """

    def __init__(self, spec: OrderSpec, pieces: Mapping[int, str]) -> None:
        self.spec = spec
        self.pieces = pieces
        self.text = ""

    @property
    def done(self) -> bool:
        """Whether the list is closed (``"]"`` written)."""
        return self.text.endswith("]")

    def allowed(self) -> list[int]:
        """Token IDs that keep the answer valid (empty once it is done)."""
        if self.done:
            return []
        return [t for t, p in self.pieces.items() if valid_number_list(self.text + p, self.spec)]

    def advance(self, token: int) -> None:
        """Append a chosen token.

        Raises:
            ConfigError: If the token is not one of `allowed`.
        """
        piece = self.pieces.get(token)
        if piece is None or not valid_number_list(self.text + piece, self.spec):
            raise ConfigError(f"token {token} does not continue the number list {self.text!r}")
        self.text += piece


def number_list_pieces(vocab: Mapping[int, str]) -> dict[int, str]:
    """The tokens of a vocabulary (ID -> text) made only of digits, ``","``, ``" "``, ``"]"``."""
    return {t: p for t, p in vocab.items() if p and set(p) <= NUMBER_LIST_CHARS}


__all__ = [
    "NUMBER_LIST_CHARS",
    "NumberListState",
    "OrderSpec",
    "number_list_pieces",
    "valid_number_list",
]

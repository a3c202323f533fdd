"""Errors that lmrec raises for bad input; the CLI turns them into exit code 2."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class LmrecError(Exception):
    """Base class for every error lmrec raises on purpose."""


class InputError(LmrecError, ValueError):
    """Malformed input data, with the place it was found.

    Args:
        message: What is wrong.
        path: The file, when the input came from one.
        line: 1-based line number in that file (the header is line 1).
        column: The column or field name.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class UnknownIdError(LmrecError, KeyError):
    """IDs that the model or dataset does not know."""

    def __init__(self, kind: str, ids: Iterable[str]) -> None:
        self.kind = kind
        self.ids = list(ids)
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" (and {len(self.ids) - 5} more)" if len(self.ids) > 5 else ""
        return f"unknown {self.kind} id(s): {shown}{more}"


class ConfigError(LmrecError, ValueError):
    """A bad option, model name or configuration value."""


def check_option(option: str, value: str, allowed: Iterable[str]) -> str:
    """``value`` if it is one of ``allowed``, else a `ConfigError` naming the option."""
    choices = list(allowed)
    if value not in choices:
        raise ConfigError(
            f"{option} must be {', '.join(choices[:-1])} or {choices[-1]}, not {value!r}"
        )
    return value

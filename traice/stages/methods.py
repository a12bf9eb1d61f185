"""Method dispatch: a stage's ``method`` setting picks one entry of its ``METHODS`` table."""

from __future__ import annotations

from typing import Mapping, TypeVar

T = TypeVar("T")


def choose(methods: Mapping[str, T], method: str, stage: str) -> T:
    """``methods[method]``; ValueError naming the stage and the choices for an unknown method."""
    try:
        return methods[method]
    except KeyError:
        raise ValueError(f"unknown {stage} method {method!r}; choose from {tuple(methods)}") from None

"""The benchmark's interleaving is fair: no contender always runs right after the same other one."""

from __future__ import annotations

import itertools
from collections import Counter

from bench.harness import interleaved

NAMES = ["kindle_store", "kindle_store_repo", "floor", "orm"]


def _calls(iterations: int) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    ops = {name: (lambda i, name=name: calls.append((name, i)) or True) for name in NAMES}
    interleaved(ops, iterations, warmup=0)
    return calls


def test_each_contender_is_called_once_per_round_with_the_rounds_argument() -> None:
    calls = _calls(50)
    for i in range(50):
        assert sorted(calls[4 * i:4 * i + 4]) == sorted((name, i) for name in NAMES)


def test_each_contender_follows_the_orm_about_equally_often() -> None:
    # A rotation (A B C D, B C D A, ...) put kindle_store right after the ORM in 3 of 4 rounds and the floor
    # never: the ORM's work leaves the caches cold for whoever comes next.
    calls = [name for name, _ in _calls(400)]
    after_orm = Counter(b for a, b in itertools.pairwise(calls) if a == "orm")
    share = {name: after_orm[name] / sum(after_orm.values()) for name in NAMES if name != "orm"}
    assert all(0.25 < s < 0.42 for s in share.values()), share


def test_the_order_is_repeatable() -> None:
    assert _calls(20) == _calls(20)

"""bench/diagnose.py's recall ceiling: how many of each person's record pairs some edges join."""

from __future__ import annotations

import importlib.util
from itertools import combinations
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location(
    "diagnose", Path(__file__).resolve().parents[1] / "bench" / "diagnose.py"
)
assert _spec is not None and _spec.loader is not None
diagnose = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagnose)


def test_edges_join_pairs_transitively_and_only_within_a_person() -> None:
    persons = [["a1", "a2", "a3"], ["b1", "b2"], ["c1"]]
    assert diagnose._pairs_joined([], persons) == 0
    assert diagnose._pairs_joined([("a1", "a2")], persons) == 1
    # a1-a2 and a2-a3 join a1-a3 too: three pairs of person a
    assert diagnose._pairs_joined([("a1", "a2"), ("a3", "a2")], persons) == 3
    assert diagnose._pairs_joined([("a1", "a2"), ("b2", "b1")], persons) == 2
    assert diagnose._pairs_joined([("a1", "a2"), ("a2", "a3"), ("b1", "b2")], persons) == 4
    # an edge between two persons joins no pair of either
    assert diagnose._pairs_joined([("a1", "b1"), ("b2", "a2")], persons) == 0


def _joined_by_search(edges: list[tuple[str, str]], persons: list[list[str]]) -> int:
    """The same count the slow way: a pair of one person is joined when a path of edges (through
    anyone's records) connects it."""
    neighbours: dict[str, set[str]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)

    def reachable(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for n in neighbours.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    return sum(b in reachable(a) for keys in persons for a, b in combinations(keys, 2))


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    picks=st.lists(st.tuples(st.integers(0, 999), st.integers(0, 999))),
)
def test_pairs_joined_matches_a_path_search(sizes: list[int], picks) -> None:
    persons = [[f"p{i}r{j}" for j in range(n)] for i, n in enumerate(sizes)]
    keys = [k for person in persons for k in person]
    edges = [(keys[a % len(keys)], keys[b % len(keys)]) for a, b in picks]
    assert diagnose._pairs_joined(edges, persons) == _joined_by_search(edges, persons)

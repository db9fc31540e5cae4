"""datasets info statistics on a graph small enough to count by hand."""

from __future__ import annotations

from emu_dgl.data import KnowledgeGraph, dataset_stats


def test_stats_by_hand() -> None:
    kg = KnowledgeGraph.from_labeled_triples(
        name="hand",
        train=[
            ("a", "likes", "b"),
            ("b", "likes", "c"),
            ("a", "likes", "b"),  # duplicate
            ("d", "knows", "e"),
            ("a", "knows", "c"),
        ],
        valid=[("a", "likes", "b"), ("c", "likes", "f")],  # one also in train; f unseen
        test=[("g", "hates", "a"), ("g", "hates", "h")],  # g, h and 'hates' unseen
    )
    stats = dataset_stats(kg, top_relations=2)
    assert stats["num_entities"] == 8 and stats["num_relations"] == 3
    assert (stats["num_train"], stats["num_valid"], stats["num_test"]) == (4, 2, 2)
    assert stats["duplicates_removed"] == {"train": 1, "valid": 0, "test": 0}
    assert stats["also_in_train"] == {"valid": 1, "test": 0}
    assert stats["unseen_in_train"]["valid"] == {"entities": 1, "relations": 0, "triples": 1}
    assert stats["unseen_in_train"]["test"] == {"entities": 2, "relations": 1, "triples": 2}
    # train degrees: a 2, b 2, c 2, d 1, e 1, f g h 0
    assert stats["degree"] == {"min": 0, "max": 2, "mean": 1.0, "median": 1.0, "zero": 3}
    # components of the train graph: {a, b, c}, {d, e}, {f}, {g}, {h}
    assert stats["components"] == {"count": 5, "largest": 3, "singletons": 3}
    assert stats["top_relations"] == [
        {"name": "likes", "id": 0, "count": 2},
        {"name": "knows", "id": 1, "count": 2},
    ]

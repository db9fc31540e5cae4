"""A small synthetic knowledge graph with patterns a KGE model can learn.

The world: families of three generations living in cities, whose adults work
for companies located in cities. Every fact is stored in both directions, via a
symmetric relation or an inverse pair, so each held-out triple has its partner
in train:

=================  ===========================  ==================================
relation           partner                      pattern
=================  ===========================  ==================================
married_to         married_to                   symmetric
sibling_of         sibling_of                   symmetric
colleague_of       colleague_of                 symmetric
parent_of          child_of                     inverse
grandparent_of     grandchild_of                inverse; grandparent_of = parent_of o parent_of
works_for          employs                      inverse
lives_in           residence_of                 inverse; most adults work in their home city
located_in         hosts                        inverse
=================  ===========================  ==================================

The split holds out one direction of a fraction of the facts (``holdout`` of
them for valid, as many for test); the other direction stays in train, so every
valid/test triple is inferable from train and every entity occurs in train. With
the defaults: about 600 entities, 13 relations and 5,800 triples (valid and test
about 9% each), generated in about 10 ms, identical for a given seed.
"""

from __future__ import annotations

import numpy as np

from emu_dgl.data.knowledge_graph import KnowledgeGraph

__all__ = ["RELATION_PARTNERS", "generate_synthetic"]

#: relation -> the relation of the same fact read backwards (itself when symmetric).
RELATION_PARTNERS: dict[str, str] = {
    "married_to": "married_to",
    "sibling_of": "sibling_of",
    "colleague_of": "colleague_of",
    "parent_of": "child_of",
    "child_of": "parent_of",
    "grandparent_of": "grandchild_of",
    "grandchild_of": "grandparent_of",
    "works_for": "employs",
    "employs": "works_for",
    "lives_in": "residence_of",
    "residence_of": "lives_in",
    "located_in": "hosts",
    "hosts": "located_in",
}


def generate_synthetic(
    *,
    seed: int = 0,
    num_families: int = 48,
    num_companies: int = 16,
    num_cities: int = 6,
    holdout: float = 0.15,
    name: str = "synthetic",
) -> KnowledgeGraph:
    """Generate the family/organisation world (see the module doc); deterministic in ``seed``."""
    if not 0.0 <= holdout < 0.5:
        raise ValueError("holdout must be in [0, 0.5): valid and test each take that fraction")
    rng = np.random.default_rng(seed)
    facts: list[tuple[str, str, str]] = []  # one direction of each fact; the partner is implied
    people: list[str] = []

    def person() -> str:
        people.append(f"person_{len(people):04d}")
        return people[-1]

    def pairwise(group: list[str], relation: str) -> None:
        facts.extend((a, relation, b) for i, a in enumerate(group) for b in group[i + 1 :])

    cities = [f"city_{c}" for c in range(num_cities)]
    companies = [f"company_{c:02d}" for c in range(num_companies)]
    company_city = rng.integers(num_cities, size=num_companies)
    facts.extend(
        (company, "located_in", cities[c])
        for company, c in zip(companies, company_city, strict=True)
    )
    employees: list[list[str]] = [[] for _ in companies]

    for _ in range(num_families):
        home = int(rng.integers(num_cities))
        grandparents = [person(), person()]
        facts.append((grandparents[0], "married_to", grandparents[1]))
        children = [person() for _ in range(int(rng.integers(2, 4)))]
        pairwise(children, "sibling_of")
        adults = grandparents + children
        members = grandparents + children
        for child in children:
            facts.extend((gp, "parent_of", child) for gp in grandparents)
            spouse = person()
            adults.append(spouse)
            members.append(spouse)
            facts.append((child, "married_to", spouse))
            grandchildren = [person() for _ in range(int(rng.integers(1, 4)))]
            members.extend(grandchildren)
            pairwise(grandchildren, "sibling_of")
            for grandchild in grandchildren:
                facts.extend((parent, "parent_of", grandchild) for parent in (child, spouse))
                facts.extend((gp, "grandparent_of", grandchild) for gp in grandparents)
        facts.extend((member, "lives_in", cities[home]) for member in members)
        # Most adults work for a company in their home city (works_for o located_in ~ lives_in).
        local = np.flatnonzero(company_city == home)
        for adult in adults:
            pool = local if local.size and rng.random() < 0.8 else np.arange(num_companies)
            company = int(rng.choice(pool))
            employees[company].append(adult)
            facts.append((adult, "works_for", companies[company]))

    # Colleagues: a ring over each company's staff in a seeded random order.
    for staff in employees:
        if len(staff) > 1:
            ring = [staff[i] for i in rng.permutation(len(staff))]
            pairs = (
                zip(ring, ring[1:] + ring[:1], strict=True)
                if len(ring) > 2
                else [(ring[0], ring[1])]
            )
            facts.extend((a, "colleague_of", b) for a, b in pairs)

    forward = np.array(facts, dtype=object)
    backward = np.stack(
        [
            forward[:, 2],
            np.array([RELATION_PARTNERS[r] for r in forward[:, 1]], dtype=object),
            forward[:, 0],
        ],
        axis=1,
    )
    # Per fact: 0 = both directions in train, 1 = one direction to valid, 2 = one to test.
    u = rng.random(len(forward))
    where = np.where(u < holdout, 1, np.where(u < 2 * holdout, 2, 0))
    flip = rng.random(len(forward)) < 0.5  # which direction is held out
    held = np.where(flip[:, None], backward, forward)
    kept = np.where(flip[:, None], forward, backward)
    both = np.concatenate([forward[where == 0], backward[where == 0]])
    train = np.concatenate([both, kept[where != 0]])
    train = train[rng.permutation(len(train))]
    return KnowledgeGraph.from_labeled_triples(
        name=name, train=train, valid=held[where == 1], test=held[where == 2]
    )

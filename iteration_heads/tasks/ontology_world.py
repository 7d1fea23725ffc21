"""A fixed "world" ontology that a model learns in its weights: the small-model analogue of a
pretraining prior (Dutta et al.'s false-ontology control needs one).

The world links every world concept to one parent (a later world concept or, at the end of a
chain, a property), along disjoint chains. Training problems over the world state its facts only
sometimes, so a model must memorise the rest; contradicting problems state links that the world
does not have, so the in-context facts and the memorised ones disagree.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from iteration_heads.errors import IterationHeadsError


@dataclass(frozen=True)
class World:
    """The world's one parent of every world concept.

    Attributes:
        parent: ``concept -> concept or property``.
        chains: The world's chains, each ending with its property.

    Example:
        >>> world = World.build(["c0", "c1", "c2", "c3"], ["p0", "p1"], chain_length=2, seed=0)
        >>> len(world.chains), all(len(chain) == 3 for chain in world.chains)
        (2, True)
        >>> world.parent[world.chains[0][0]] == world.chains[0][1]
        True
    """

    parent: dict[str, str]
    chains: tuple[tuple[str, ...], ...]

    @classmethod
    def build(
        cls, concepts: Sequence[str], properties: Sequence[str], *, chain_length: int, seed: int
    ) -> World:
        """Chains of ``chain_length`` concepts (the last one longer by the leftovers), each
        ending with a random property, drawn with ``seed``."""
        if len(concepts) < chain_length:
            raise IterationHeadsError(
                f"a world of {len(concepts)} concepts cannot hold a chain of {chain_length}"
            )
        rng = random.Random(seed)
        order = list(concepts)
        rng.shuffle(order)
        n_chains = len(order) // chain_length
        cuts = [i * chain_length for i in range(n_chains)] + [len(order)]
        chains: list[tuple[str, ...]] = []
        parent: dict[str, str] = {}
        for start, stop in itertools.pairwise(cuts):
            chain = (*order[start:stop], rng.choice(list(properties)))
            chains.append(chain)
            parent.update(itertools.pairwise(chain))
        return cls(parent, tuple(chains))

    def chain(self, hops: int, rng: random.Random) -> list[str]:
        """A random world chain of ``hops`` concepts followed by its property.

        Example:
            >>> world = World.build(["c0", "c1", "c2"], ["p0"], chain_length=3, seed=0)
            >>> world.chain(2, random.Random(0))[-1]
            'p0'
        """
        starts = [c[-hops - 1 :] for c in self.chains if len(c) > hops]
        if not starts:
            raise IterationHeadsError(f"no world chain has {hops} concepts")
        return list(rng.choice(starts))

    def contradiction(self, hops: int, properties: Sequence[str], rng: random.Random) -> list[str]:
        """A chain of ``hops`` world concepts and a property in which every link differs from
        the world's (the context says ``a is b`` where the world says ``a is c``).

        Example:
            >>> world = World.build(["c0", "c1", "c2", "c3"], ["p0", "p1"], chain_length=2, seed=0)
            >>> chain = world.contradiction(2, ["p0", "p1"], random.Random(1))
            >>> any(world.parent[a] == b for a, b in zip(chain, chain[1:]))
            False
        """
        concepts = list(self.parent)
        for _ in range(1000):
            chain = rng.sample(concepts, hops)
            if all(self.parent[a] != b for a, b in itertools.pairwise(chain)):
                last = [p for p in properties if p != self.parent[chain[-1]]]
                if last:
                    return [*chain, rng.choice(last)]
        raise IterationHeadsError(f"the world has no contradicting chain of {hops} concepts")

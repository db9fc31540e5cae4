"""Our negative samplers behind DGL's negative-sampler contract, for ``dgl.dataloading``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from emu_dgl._dgl import dgl
from emu_dgl.sampling.base import NegativeSampler

__all__ = ["DGLNegativeSampler"]


class DGLNegativeSampler:
    """Our samplers behind DGL's negative-sampler contract ``(g, eids) -> (src, dst)``.

    For the edges ``eids`` of ``g`` (a tensor for a graph with one edge type, or
    ``{etype: eids}``), returns corrupted pairs ``(src, dst)``; for a dict,
    ``{canonical_etype: (src, dst)}``. Pass it as ``negative_sampler=`` of
    ``dgl.dataloading.as_edge_prediction_sampler``. ``side`` says which end is corrupted:

    * ``"tail"`` (default, as ``dgl.dataloading.negative_sampler.Uniform``): ``n`` pairs per
      edge, ``src`` repeated ``n`` times, ``dst`` the sampler's tail negatives (anchor: the
      edge's source);
    * ``"head"``: ``n`` pairs per edge, ``src`` the sampler's head negatives, ``dst``
      repeated (anchor: the edge's destination);
    * ``"both"``: ``2n`` pairs per edge, the ``n`` tail-corrupted pairs of every edge first,
      then the ``n`` head-corrupted ones (KGE training corrupts both sides);
    * ``"alternate"``: tails on the first call, heads on the next, and so on, as
      ``emu-dgl train`` alternates its steps.

    Node ids of ``g`` must be entity ids: a homogeneous graph, or a heterograph
    with a single node type (``KnowledgeGraph.to_dgl()``). The relation of an
    edge (needed by a :class:`FilteredSampler`) is

    * on a heterograph, the index of its edge type name in ``relation_names``
      (pass ``kg.relation_names``); without it, the index of its canonical
      edge type in ``g.canonical_etypes`` (DGL sorts those by name);
    * on a homogeneous graph, ``g.edata[etype_field][eids]`` when present, else 0.

    The adapter owns a torch generator per device (seeded with ``seed``) and a
    step counter that it passes to the sampler.
    """

    def __init__(
        self,
        sampler: NegativeSampler,
        *,
        relation_names: Sequence[str] | None = None,
        etype_field: str = "etype",
        seed: int = 0,
        side: Literal["tail", "head", "both", "alternate"] = "tail",
    ) -> None:
        if side not in ("tail", "head", "both", "alternate"):
            raise ValueError(f"side must be tail, head, both or alternate, got {side!r}")
        self.side = side
        self.sampler = sampler
        self.k = sampler.num_negatives
        self.relation_ids: Mapping[str, int] | None = (
            None if relation_names is None else {n: i for i, n in enumerate(relation_names)}
        )
        self.etype_field = etype_field
        self.seed = seed
        self.step = 0
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[device] = gen
        return self._generators[device]

    def _relation(
        self, g: dgl.DGLGraph, eids: torch.Tensor, etype: tuple[str, str, str]
    ) -> torch.Tensor:
        if len(g.canonical_etypes) > 1 or self.relation_ids is not None:
            if self.relation_ids is not None:
                if etype[1] not in self.relation_ids:
                    raise KeyError(f"edge type {etype[1]!r} is not in relation_names")
                rel = self.relation_ids[etype[1]]
            else:
                rel = g.canonical_etypes.index(etype)
            return torch.full_like(eids, rel)
        if self.etype_field in g.edata:
            return g.edata[self.etype_field][eids].to(eids.dtype)
        return torch.zeros_like(eids)

    def _generate(
        self, g: dgl.DGLGraph, eids: torch.Tensor, etype: tuple[str, str, str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(g.ntypes) != 1:
            raise ValueError(
                "DGLNegativeSampler needs a graph whose nodes are entities (one node type)"
            )
        eids = eids.long()
        src, dst = g.find_edges(eids, etype=etype)
        pos = torch.stack([src.long(), self._relation(g, eids, etype).long(), dst.long()], dim=1)
        gen = self._generator(pos.device)
        sides = {"both": ("tail", "head"), "alternate": (("tail", "head")[self.step % 2],)}
        pairs = []
        for side in sides.get(self.side, (self.side,)):
            neg = self.sampler.sample(pos, side, generator=gen, step=self.step)  # type: ignore[arg-type]
            neg = neg.reshape(-1).to(src.dtype)
            kept = (src if side == "tail" else dst).repeat_interleave(self.k)
            pairs.append((kept, neg) if side == "tail" else (neg, kept))
        self.step += 1
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def __call__(
        self, g: dgl.DGLGraph, eids: torch.Tensor | Mapping[object, torch.Tensor]
    ) -> (
        tuple[torch.Tensor, torch.Tensor]
        | dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]]
    ):
        if isinstance(eids, Mapping):
            return {
                g.to_canonical_etype(et): self._generate(g, ids, g.to_canonical_etype(et))
                for et, ids in eids.items()
            }
        if len(g.canonical_etypes) != 1:
            raise ValueError("pass eids as {etype: ids} for a graph with several edge types")
        return self._generate(g, eids, g.canonical_etypes[0])

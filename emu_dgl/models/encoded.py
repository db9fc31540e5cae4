"""The entity vectors of a :class:`~emu_dgl.models.KGEModel`: its table, or its encoder's
output over the training graph (:mod:`emu_dgl.encoders`).

Everything that scores reads entities through :meth:`EncodedEntities.entity_rows` or
:meth:`EncodedEntities.entity_vectors`; with the table encoder those are the table's own
rows (an ``nn.Embedding`` lookup, as before encoders), with a graph encoder its output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from emu_dgl.encoders import BaseEncoder, TableEncoder
from emu_dgl.errors import ConfigError

if TYPE_CHECKING:
    from dgl import DGLGraph

__all__ = ["EncodedEntities"]


class EncodedEntities:
    """The encoder part of :class:`~emu_dgl.models.KGEModel` (a mixin of that
    ``nn.Module``): the encoder, the graph it reads, and the entity vectors it makes from
    the table ``entity``."""

    encoder: BaseEncoder
    graph: DGLGraph | None
    entity: nn.Embedding
    _frozen: Tensor | None

    def _set_encoder(
        self, encoder: BaseEncoder | None, graph: DGLGraph | None, width: int, dim: int
    ) -> BaseEncoder:
        """Keep ``encoder`` (``None``: the table) and the graph it reads, checked against
        the decoder's entity ``width`` (at model width ``dim``)."""
        if encoder is None:
            encoder = TableEncoder(in_width=width, out_width=width)
        if encoder.out_width != width:
            raise ConfigError(
                f"the encoder's output width ({encoder.out_width}) must be the decoder's entity "
                f"width ({width} at model.dim={dim})"
            )
        if encoder.uses_graph and graph is None:
            raise ConfigError(
                f"model.encoder={type(encoder).__name__} passes messages over the training "
                "graph: give KGEModel graph=message_graph(train, num_entities, num_relations)"
            )
        self.encoder = encoder
        self.graph = graph if encoder.uses_graph else None
        self._frozen = None  # see encoded_once
        return encoder

    @property
    def entity_width(self) -> int:
        """Width of the entity vectors the decoder scores (the encoder's output)."""
        return self.encoder.out_width

    def message_graph(self, device: torch.device) -> DGLGraph:
        """The training graph on ``device`` (moved there once, on first use)."""
        assert self.graph is not None, "the table encoder reads no graph"
        if self.graph.device != device:
            try:
                self.graph = self.graph.to(device)
            except Exception as exc:  # DGL built without this device's support
                why = " ".join(str(exc).split())[:120]
                raise ConfigError(
                    f"model.encoder={type(self.encoder).__name__} cannot pass messages on "
                    f"{device}: DGL could not move the graph there ({why}); "
                    "install a DGL build for that device, or use train.device=cpu"
                ) from None
        return self.graph

    def encode_all(self) -> Tensor:
        """Every entity's vector ``[E, De]``, with autograd: the table itself, or the encoder
        over the whole training graph."""
        weight = self.entity.weight
        if not self.encoder.uses_graph:
            return weight
        from emu_dgl.encoders.graph import full_blocks

        blocks = full_blocks(self.message_graph(weight.device), self.encoder.num_layers)
        return self.encoder(blocks, weight)

    def entity_vectors(self) -> Tensor:
        """:meth:`encode_all`, or inside :meth:`encoded_once` the vectors it computed."""
        if self._frozen is not None:
            return self._frozen
        return self.encode_all()

    @contextlib.contextmanager
    def encoded_once(self) -> Iterator[None]:
        """Within it, every entity's vector is computed once (without autograd, in the
        model's current mode) and reused: what one evaluation or prediction pass scores.
        Nothing to do for the table."""
        if not self.encoder.uses_graph or self._frozen is not None:
            yield
            return
        with torch.no_grad():
            self._frozen = self.encode_all()
        try:
            yield
        finally:
            self._frozen = None

    def entity_rows(self, ids: Tensor) -> Tensor:
        """The vectors of the entities ``ids`` (any shape) ``[*ids.shape, De]``."""
        if not self.encoder.uses_graph:
            return self.entity(ids)
        vectors = self.entity_vectors()
        return vectors.index_select(0, ids.reshape(-1)).view(*ids.shape, vectors.shape[-1])

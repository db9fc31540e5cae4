r"""Entity rows computed by a graph encoder, behind the training step's table seam.

The step (:mod:`emu_dgl.training.step`) gathers every entity row it needs through an
:class:`~emu_dgl.training.step.EntityTable` (``gather(ids) -> rows``), treats the rows as
leaves, and hands their gradients back (``push(optimizer, [(ids, grads)])``). For the table
encoder those are the table's rows. :class:`EncodedTable` computes them with the model's
encoder instead and keeps the encoder's output, with its autograd graph, between the two
calls; ``push`` sums the rows' gradients into a gradient of that output (``index_add``) and
backpropagates it through the encoder (``torch.autograd.backward``), so the table and every
layer weight get dense gradients, and the optimizer steps them all.

Two modes (``model.encoder_mode``):

* ``full``: the encoder passes over the whole training graph every step and the rows are
  picked from its output. Fixed shapes, no host synchronisation: the step stays pure and
  capturable. Its cost is one pass over the graph per step, whatever the batch: what fits
  small and mid-sized graphs, and large batches.
* ``sampled``: DGL's neighbour sampler draws message-flow graphs (``dgl.to_block``) around
  the step's distinct entities (anchors, true entities, negatives) with
  ``model.encoder_fanouts`` neighbours per layer, and the encoder computes their vectors
  only. The sampling runs on the host (``unique``, DGL's sampler): not capturable, said by
  the step's ``capturable``. It fits graphs too large for a pass per step, with batches
  whose entities are a small part of the graph (few or shared negatives).

DGL's sampler draws from DGL's own generator, seeded every step from the state of the run's
generator (checkpointed; read, not drawn from, so both modes consume the same random
numbers), so a resumed run samples what an uninterrupted one does (as DGL's per-thread
engines allow: the same thread count).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError
from emu_dgl.registry import ENCODERS

if TYPE_CHECKING:
    from emu_dgl.config import Config
    from emu_dgl.encoders import BaseEncoder
    from emu_dgl.models import KGEModel

__all__ = [
    "ENCODER_MODES",
    "EncodedTable",
    "check_sharded_encoder",
    "encoded_table_from_config",
    "encoder_from_config",
]

ENCODER_MODES = ("full", "sampled")


class EncodedTable:
    """The step's entity rows from ``model.encoder``, over the whole graph (``full``) or
    sampled blocks (``sampled``, ``fanouts`` per layer, ``-1`` = every neighbour)."""

    def __init__(
        self,
        model: KGEModel,
        *,
        mode: str = "full",
        fanouts: Sequence[int] = (),
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        if mode not in ENCODER_MODES:
            raise ConfigError(
                f"model.encoder_mode: unknown value {mode!r}; valid: {', '.join(ENCODER_MODES)}"
            )
        layers = model.encoder.num_layers
        fanouts = list(fanouts) or [-1] * layers
        if mode == "sampled" and len(fanouts) != layers:
            raise ConfigError(
                f"model.encoder_fanouts has {len(fanouts)} entries for {layers} encoder layers; "
                f"give one per layer, e.g. model.encoder_fanouts={','.join(['10'] * layers)}"
            )
        if mode == "sampled" and generator is None:
            raise ValueError("the sampled mode draws from the run's generator: pass generator=")
        self.model, self.mode, self.fanouts = model, mode, fanouts
        self.generator, self.seed = generator, seed
        self.pure = mode == "full"
        #: Why the step cannot be captured with this table (``None``: it can).
        self.reason = None if self.pure else "the encoder samples neighbour blocks on the host"
        self._output: Tensor | None = None
        self._seeds: Tensor | None = None

    @property
    def weight(self) -> Tensor:
        """The entity table (the encoder's input)."""
        return self.model.entity.weight

    def gather(self, ids: list[Tensor]) -> list[Tensor]:
        """The vectors of each id tensor (1-d), detached: leaves for the step."""
        if self.mode == "full":
            self._output = output = self.model.encode_all()
            with torch.no_grad():
                return [output.index_select(0, part) for part in ids]
        seeds = torch.unique(torch.cat(ids))  # sorted: positions by searchsorted
        self._output, self._seeds = self._encode_sampled(seeds), seeds
        with torch.no_grad():
            return [self._output.index_select(0, torch.searchsorted(seeds, p)) for p in ids]

    def _encode_sampled(self, seeds: Tensor) -> Tensor:
        from emu_dgl._dgl import dgl
        from emu_dgl.encoders.graph import sampled_blocks

        assert self.generator is not None
        # the generator's state (the step's random words were drawn from it just before)
        state = self.generator.get_state().numpy().tobytes()
        dgl.seed(_mix_seed(self.seed, state))
        model = self.model
        graph = model.message_graph(seeds.device)
        blocks = sampled_blocks(graph, seeds, self.fanouts)
        rows = model.entity.weight.index_select(0, blocks[0].srcdata[dgl.NID])
        return model.encoder(blocks, rows)

    def push(self, optimizer: torch.optim.Optimizer, parts: list[tuple[Tensor, Tensor]]) -> None:
        """Backpropagate the rows' gradients ``(ids, grads)`` through the encoder into the
        table and the layer weights (their ``.grad``, which the optimizer steps)."""
        output, self._output = self._output, None
        assert output is not None, "push follows gather"
        grad = torch.zeros_like(output)
        for ids, grads in parts:
            where = ids if self.mode == "full" else torch.searchsorted(self._seeds, ids)
            grad.index_add_(0, where, grads.view(ids.shape[0], -1).to(grad.dtype))
        torch.autograd.backward(output, grad)


# --------------------------------------------------------------------------- from a config


def encoder_from_config(
    config: Config, *, out_width: int, num_relations: int, sharded: bool = False
) -> BaseEncoder:
    """The encoder ``model.encoder`` with its options (``model.encoder_*``), mapping a table
    of ``model.encoder_width`` (default: ``out_width``) to ``out_width``-wide vectors over
    ``num_relations`` message types; ``sharded``: for one block of a table split over
    processes, which only an encoder that ``runs_sharded`` accepts (one line otherwise)."""
    if sharded:
        check_sharded_encoder(config, "several processes")
    return ENCODERS.build(
        config.model.encoder,
        out_width=out_width,
        num_relations=num_relations,
        **config.options_for(ENCODERS.config_key),
    )


def check_sharded_encoder(config: Config, where: str) -> None:
    """A one-line :class:`ConfigError` when ``model.encoder`` cannot run on an entity table
    split over processes (``where`` says how many): message passing reads neighbours' rows,
    which other processes hold."""
    name = config.model.encoder
    if not getattr(ENCODERS.get(name), "runs_sharded", False):
        raise ConfigError(
            f"model.encoder={name} is not supported on {where} (a graph encoder passes "
            "messages between entity rows, which a run on several processes splits between "
            "them); train on one process or use model.encoder=table"
        )


def encoded_table_from_config(
    config: Config, model: KGEModel, generator: torch.Generator
) -> EncodedTable:
    """The step's entity rows from the model's graph encoder, in ``model.encoder_mode``."""
    options = config.options_for(ENCODERS.config_key)
    return EncodedTable(
        model,
        mode=options["mode"],
        fanouts=options["fanouts"],
        generator=generator,
        seed=config.train.seed,
    )


def _mix_seed(seed: int, state: bytes) -> int:
    """A 31-bit seed for ``dgl.seed`` mixed from the run's seed and a generator state."""
    digest = hashlib.sha256(str(seed).encode() + b":" + state).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

"""The "label smoothing only" ablation of EMU: no mutation at all."""

from __future__ import annotations

from emu_dgl.models.mutation import MUTATIONS, Mutation


@MUTATIONS.register("label_smoothing")
class LabelSmoothingOnly(Mutation):
    """EMU's soft targets without mutated negatives: the EMU loss receives the unmutated
    negatives' scores as the mutated ones (the paper's ablation). Its builder gives
    ``None``, which is what the training step and :meth:`KGEModel.score_negatives` read as
    "no mutation"."""

    @classmethod
    def from_options(cls) -> None:
        return None

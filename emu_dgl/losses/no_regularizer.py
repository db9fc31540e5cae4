"""No regulariser (``loss.regularizer: none``)."""

from __future__ import annotations

from emu_dgl.registry import REGULARIZERS


@REGULARIZERS.register("none")
class NoRegularizer:
    """No penalty: its builder gives ``None``, which the training step reads as none."""

    @classmethod
    def from_options(cls) -> None:
        return None

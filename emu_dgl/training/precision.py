"""Entity tables stored in bfloat16 and computed in float32 (``model.dtype: bfloat16``).

The entity table is most of a large run's memory (86M entities x 100 floats: 34 GB in
float32). Stored in bfloat16 it takes half that, with the float32 exponent range and an
8-bit mantissa (about 3 significant digits). Every computation stays in float32:

* a lookup (the training step's gather, evaluation's rows) upcasts the rows it reads;
* gradients are float32, and the row optimizers (:mod:`emu_dgl.training.sparse`) keep
  their state in float32, gather the touched rows, compute the update in float32 and
  write each row back rounded once to the nearest bfloat16 (round-to-nearest-even).

Rounding to nearest loses an update smaller than half a bfloat16 step of the weight
(about ``|w| / 512``); stochastic rounding would keep such updates on average. emu-dgl
rounds to nearest: on FB15k-237 with DistMult at the CPU protocol budget the difference
in MRR is what ``benchmarks/bench_bf16_mrr.py`` measures (see the README's "Large
graphs").

Only row-wise updates are supported with a bfloat16 table (every touched row gathered,
updated in float32, written back): the dense paths (``train.sparse: false``, the
1-vs-all loss, the whole-table L3 penalty, the reference schedule's dense Adam) would
give the table a bfloat16 gradient and optimizer, and are refused in one line.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from emu_dgl.errors import ConfigError

__all__ = ["TABLE_DTYPES", "StoredEmbedding", "check_table_dtype", "stored_entity_table"]

#: ``model.dtype`` -> the entity table's storage dtype.
TABLE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: Storage dtypes whose rows are upcast to float32 for every computation.
LOW_PRECISION = (torch.bfloat16, torch.float16)


class StoredEmbedding(nn.Embedding):
    """An embedding table stored in a low-precision dtype: lookups return float32 rows."""

    def forward(self, ids: Tensor) -> Tensor:
        return super().forward(ids).float()


def compute_rows(rows: Tensor) -> Tensor:
    """``rows`` as the step computes with them: float32 when stored in low precision."""
    return rows.float() if rows.dtype in LOW_PRECISION else rows


def stored_entity_table(num_entities: int, width: int, dtype: torch.dtype) -> StoredEmbedding:
    """An uninitialised table of ``dtype`` (never a float32 copy of it first)."""
    return StoredEmbedding(num_entities, width, dtype=dtype)


def check_table_dtype(config: Any) -> None:
    """One-line ConfigError for a ``model.dtype`` the rest of the config cannot train.

    What makes an update dense is said by the components themselves: a loss that scores
    every entity (``scores_all_entities``), a regulariser of the whole table
    (``touches_every_row``), an optimizer that ``train.sparse: auto`` keeps dense
    (``rows_under_auto`` false: Adam)."""
    from emu_dgl.registry import LOSSES, OPTIMIZERS, REGULARIZERS

    dtype = config.model.dtype
    if dtype not in TABLE_DTYPES:  # (the config's Literal already says so)
        raise ConfigError(f"model.dtype: expected one of {', '.join(TABLE_DTYPES)}, got {dtype!r}")
    if dtype == "float32":
        return
    train, loss = config.train, config.loss
    scores_all = getattr(LOSSES.get(loss.name), "scores_all_entities", False)
    regularizer = REGULARIZERS.get(loss.regularizer)
    optimizer = OPTIMIZERS.get(train.optimizer)
    dense = [
        (train.sparse is False, "train.sparse=false (dense updates)"),
        (
            bool(scores_all),
            f"loss.name={loss.name} (every entity gets a gradient)",
        ),
        (
            bool(getattr(regularizer, "touches_every_row", False)),
            f"loss.regularizer={loss.regularizer} (a whole-table gradient)",
        ),
        (train.schedule == "reference", "train.schedule=reference (dense Adam after its switch)"),
        (
            train.sparse == "auto" and not getattr(optimizer, "rows_under_auto", False),
            f"train.optimizer={train.optimizer} with train.sparse=auto (a dense update; "
            "set train.sparse=true for its row-wise form)",
        ),
    ]
    for bad, what in dense:
        if bad:
            raise ConfigError(
                f"model.dtype=bfloat16 needs row-wise updates of the entity table, but {what}; "
                "use model.dtype=float32, or train.optimizer=rowwise_adagrad (the large-graph optimizer)"
            )

"""A trained run as one object: its config, graph, model and metrics, and what to do with them.

:class:`RunResult` is what :func:`emu_dgl.train` returns and :func:`load_run` gives back for
any run folder (``RunResult.predict`` by name, ``.evaluate(split)``, ``.export(folder)``).
The CLI's ``evaluate``, ``predict`` and ``export`` are these methods, printed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from emu_dgl.errors import ConfigError, EmuDglError
from emu_dgl.training.run import METRICS_FILE, read_json

if TYPE_CHECKING:
    import pandas as pd

    from emu_dgl.config import Config
    from emu_dgl.data import KnowledgeGraph
    from emu_dgl.models import KGEModel

__all__ = ["RunResult", "export_meta", "load_run", "lookup"]


@dataclass
class RunResult:
    """A run: ``config`` (resolved), ``kg`` (with the ids it was trained with), ``model``
    (the ``checkpoint``'s weights, in eval mode), ``metrics`` (``metrics.json``: final
    ``valid`` and ``test`` metrics; ``None`` for a run that has not finished) and ``run_dir``.

    Unpacks as ``config, kg, model = result``, as :func:`load_run` returned before it
    returned this object.
    """

    config: Config
    kg: KnowledgeGraph
    model: KGEModel
    run_dir: Path
    metrics: dict[str, Any] | None = None
    checkpoint: str = "best"
    _known: torch.Tensor | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.config, self.kg, self.model))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def scorer(self) -> Any:
        """What ranks entities: the model, or, trained with ``dataset.inverse_triples``, the
        model with heads scored as tails of the inverse relations."""
        from emu_dgl.training.inverse import scorer

        return scorer(self.config, self.model, self.kg.num_relations)

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        *,
        relation: str,
        head: str | None = None,
        tail: str | None = None,
        top: int = 10,
        filtered: bool = True,
    ) -> pd.DataFrame:
        """The model's ``top`` completions of ``(head, relation, ?)`` or ``(?, relation, tail)``,
        by name: a table with columns ``rank``, ``entity``, ``id``, ``score`` and ``known``
        (the completed triple is in train, valid or test).

        ``filtered`` (default) leaves the known completions out, as filtered ranking does,
        so the table holds what the graph does not already say; ``filtered=False`` lists
        them too, marked in ``known``. Names are the dataset's own
        (``kg.entity_to_id``; unknown ones fail with the nearest names).
        """
        import pandas as pd

        if (head is None) == (tail is None):
            raise ConfigError(
                "give exactly one of head= (to rank tails) or tail= (to rank heads), with relation="
            )
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}")
        rel = lookup(self.kg, relation, "relation")
        anchor = lookup(self.kg, head if head is not None else tail, "entity")  # type: ignore[arg-type]
        known = self._known_triples()
        with torch.no_grad():
            if head is not None:
                query = torch.tensor([[anchor, rel]], device=self.device)
                scores = self.scorer.score_t(query)[0].float().cpu()
                answers = known[(known[:, 0] == anchor) & (known[:, 1] == rel), 2]
            else:
                query = torch.tensor([[rel, anchor]], device=self.device)
                scores = self.scorer.score_h(query)[0].float().cpu()
                answers = known[(known[:, 2] == anchor) & (known[:, 1] == rel), 0]
        is_known = torch.zeros(len(scores), dtype=torch.bool)
        is_known[answers] = True
        if filtered:
            scores = scores.masked_fill(is_known, -math.inf)
        count = min(top, len(scores) - (int(is_known.sum()) if filtered else 0))
        values, ids = scores.topk(max(count, 0))
        names = self.kg.entity_names
        return pd.DataFrame(
            {
                "rank": range(1, len(ids) + 1),
                "entity": [names[i] for i in ids.tolist()],
                "id": ids.tolist(),
                "score": values.tolist(),
                "known": is_known[ids].tolist(),
            }
        )

    def _known_triples(self) -> torch.Tensor:
        if self._known is None:
            self._known = self.kg.all_triples()
        return self._known

    # ------------------------------------------------------------------ evaluate
    def evaluate(
        self,
        split: str = "test",
        *,
        protocol: str | None = None,
        per_relation: bool = False,
    ) -> dict[str, Any]:
        """Filtered metrics of ``split`` (``valid`` or ``test``) under the run's ``eval``
        settings (``protocol`` ``full`` or ``sampled`` overrides ``eval.protocol``;
        ``given`` ranks against the fixed negatives of a converted ogbl-wikikg2 folder, as
        OGB's evaluator does, see :mod:`emu_dgl.evaluation.given`)."""
        import copy

        from emu_dgl.training.build import evaluator_from_config

        if split not in ("valid", "test", "train"):
            raise ConfigError(f"split must be valid, test or train, got {split!r}")
        if protocol == "given":
            return self._evaluate_given(split)
        config = self.config
        if protocol is not None:
            config = copy.deepcopy(config)
            config.eval.protocol = protocol  # type: ignore[assignment]
            config.validate()
        dev = self.device
        evaluator = evaluator_from_config(
            config, [s.to(dev) for s in self.kg.splits.values()], self.kg.num_relations
        )
        return evaluator.evaluate(
            self.scorer,
            self.kg.splits[split],
            per_relation=per_relation,
            relation_names=self.kg.relation_names,
        )

    def _evaluate_given(self, split: str) -> dict[str, Any]:
        from emu_dgl.data import data_root
        from emu_dgl.data.convert import ogb_negatives
        from emu_dgl.evaluation import evaluate_given
        from emu_dgl.training.rundata import is_plain_name

        name = self.config.dataset.name
        folder = (
            data_root(self.config.dataset.data_dir) / name if is_plain_name(name) else Path(name)
        )
        head, tail = ogb_negatives(folder, split, self.kg)
        dev = self.device
        return evaluate_given(
            self.scorer,
            self.kg.splits[split].to(dev),
            torch.from_numpy(head).to(dev),
            torch.from_numpy(tail).to(dev),
            hits_at=tuple(self.config.eval.hits_at),
        )

    # ------------------------------------------------------------------ export
    def export(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``entities.npy``, ``relations.npy``, the id-to-name tables ``entities.tsv``
        and ``relations.tsv`` and ``meta.json`` (the column layout of each table) into
        ``folder`` (created if missing; files of those names are replaced). Returns it."""
        import numpy as np

        from emu_dgl.files import anchored, make_dir, write_atomic
        from emu_dgl.training.inverse import relation_names

        out = Path(folder).expanduser()
        make_dir(out, "export folder")
        relations = (
            relation_names(self.kg)
            if self.config.dataset.inverse_triples
            else self.kg.relation_names
        )  # a row of relations.npy each
        with anchored(out, "export folder"):  # every file lands in the folder resolved here
            with torch.no_grad():  # a graph encoder's output: what the decoder scores
                vectors = self.model.entity_vectors()
            for fname, weight in (
                ("entities.npy", vectors),
                ("relations.npy", self.model.relation.weight),
            ):
                array = weight.detach().cpu().numpy()
                write_atomic(out / fname, lambda handle, a=array: np.save(handle, a), "export file")
            for fname, names in (
                ("entities.tsv", self.kg.entity_names),
                ("relations.tsv", relations),
            ):
                # UTF-8 whatever the locale: names are often not ASCII
                text = "".join(f"{i}\t{n}\n" for i, n in enumerate(names))
                write_atomic(out / fname, text, "export file")
            meta = export_meta(self.config, self.model, self.checkpoint)
            write_atomic(
                out / "meta.json",
                json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                "export file",
            )
        return out


def lookup(kg: KnowledgeGraph, name: str, what: str) -> int:
    """The id of entity (``what="entity"``) or relation ``name``, or one line naming the
    nearest names and how to list them."""
    table = kg.entity_to_id if what == "entity" else kg.relation_to_id
    if name in table:
        return table[name]
    from emu_dgl.data.lookup import suggest_names

    names = kg.entity_names if what == "entity" else kg.relation_names
    close = suggest_names(name, names)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    flag = " --relations" if what == "relation" else ""
    raise EmuDglError(
        f"unknown {what} '{name}' in dataset '{kg.name}'{hint} "
        f"(find names with: emu-dgl datasets entities {kg.name}{flag} --grep TEXT)"
    )


def export_meta(config: Config, model: Any, which: str) -> dict[str, Any]:
    """What ``export`` writes to meta.json: the model, and which columns of each table hold what."""
    decoder = model.decoder
    dim = decoder.dim

    def layout(shape: Any, names: tuple[str, ...], file: str) -> dict[str, Any]:
        rows, width = shape
        if len(names) * dim != width:  # a decoder that does not describe its blocks
            names = ("embedding",) if width == dim else (f"columns 0..{width - 1}",)
        size = width // len(names)
        return {
            "file": file,
            "shape": [rows, width],
            "blocks": {n: [i * size, (i + 1) * size] for i, n in enumerate(names)},
        }

    meta: dict[str, Any] = {
        "model": config.model.name,
        "dim": dim,
        "gamma": decoder.gamma,
        "checkpoint": f"{which}.pt",
        "entities": layout(
            (model.num_entities, model.entity_width), decoder.entity_blocks, "entities.npy"
        ),
        "relations": layout(model.relation.weight.shape, decoder.relation_blocks, "relations.npy"),
        "names": {"entities": "entities.tsv", "relations": "relations.tsv"},
        "blocks_note": "blocks: name -> [first column, end column) of each row",
    }
    if model.encoder.uses_graph:
        meta["encoder"] = config.model.encoder
        meta["encoder_note"] = (
            "entities.npy holds the encoder's output over the training graph (what the decoder "
            "scores), not the table it reads"
        )
    if decoder.phase_blocks:
        meta["phase_blocks"] = list(decoder.phase_blocks)
        meta["phase_radians_per_unit"] = math.pi / decoder.embedding_range
        meta["phase_note"] = "angle in radians = stored value * phase_radians_per_unit"
    scalars = {n: float(p.detach()) for n, p in decoder.named_parameters() if p.numel() == 1}
    if scalars:
        meta["decoder_parameters"] = scalars  # learnt scalars (pRotatE modulus, HAKE weights)
    return meta


def final_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` (None while it has none: not finished, or cut short)."""
    if not os.path.lexists(Path(run_dir) / METRICS_FILE):
        return None
    try:
        metrics = read_json(Path(run_dir) / METRICS_FILE, "metrics file")
    except EmuDglError:
        return None
    return metrics if isinstance(metrics, dict) else None


def load_run(
    run_dir: str | os.PathLike[str],
    *,
    which: str = "best",
    device: str = "cpu",
    data_dir: str | None = None,
) -> RunResult:
    """Open any run folder: a :class:`RunResult` with the ``best`` (or ``last``) weights.

    The data is looked for where the run recorded it first (``dataset.data_dir`` of its
    ``config.yaml``), then where a new run would look; ``data_dir`` is tried before both.
    Data found nowhere, or whose content changed, is one clear error; nothing is downloaded.
    """
    from emu_dgl.training.trainer import load_run as load_parts

    if which not in ("best", "last"):
        raise ConfigError(f"which must be 'best' or 'last', got {which!r}")
    path = Path(run_dir).expanduser()
    config, kg, model = load_parts(path, device=device, which=which, data_dir=data_dir)
    return RunResult(config, kg, model, path, final_metrics(path), which)

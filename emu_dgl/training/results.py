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

from emu_dgl.errors import ConfigError, EmuDglError, RunError
from emu_dgl.training.run import CONFIG_FILE, METRICS_FILE, read_json
from emu_dgl.training.state import model_config

if TYPE_CHECKING:
    import pandas as pd

    from emu_dgl.config import Config
    from emu_dgl.data import KnowledgeGraph
    from emu_dgl.models import KGEModel

__all__ = ["RunResult", "check_model_config", "export_meta", "load_run", "lookup"]


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
    def source(self) -> str:
        """Where the weights come from, in words: ``checkpoints/<checkpoint>.pt``, or for a
        run on several processes its sharded checkpoint, every process's rows stitched."""
        from emu_dgl.training.shards import trained_world_size

        if trained_world_size(self.run_dir) is not None:
            return (
                f"the {self.checkpoint} checkpoint of {self.run_dir} "
                "(every process's rows, stitched)"
            )
        return str(self.run_dir / "checkpoints" / f"{self.checkpoint}.pt")

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
        evaluator = evaluator_from_config(config, self.kg, self.kg.num_relations, device=dev)
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
        and ``relations.tsv``, ``meta.json`` (the column layout of each table, the decoder's
        learnt scalars) and a ``decoder.<name>.npy`` for each learnt tensor of the decoder
        (a shared core tensor, say) into ``folder`` (created if missing; files of those
        names are replaced). Returns it.

        The tables are the model's: of a run on several processes, the blocks of every
        process stitched into one table (see :attr:`source`)."""
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
            arrays = [
                (decoder_array_file(n), p)
                for n, p in self.model.decoder.named_parameters()
                if p.numel() != 1
            ]
            for fname, weight in (
                ("entities.npy", vectors),
                ("relations.npy", self.model.relation.weight),
                *arrays,
            ):
                tensor = weight.detach().cpu()  # a bfloat16 table is exported as float32
                array = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
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
        if not names or width % len(names):  # a decoder that does not describe its blocks
            names = (f"columns 0..{width - 1}",)
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
    arrays = {
        n: {"file": decoder_array_file(n), "shape": list(p.shape)}
        for n, p in decoder.named_parameters()
        if p.numel() != 1
    }
    if arrays:  # learnt tensors of the decoder (a shared core tensor), one .npy file each
        meta["decoder_arrays"] = arrays
    return meta


def decoder_array_file(name: str) -> str:
    """The file ``export`` writes a non-scalar decoder parameter into."""
    return f"decoder.{name}.npy"


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
    The graph is given the ids the run was trained with (a dataset whose content changed is
    refused, see :func:`~emu_dgl.training.records.match_data`). Only the components the
    model needs are looked up (:data:`~emu_dgl.training.build.EVALUATION_KINDS`): a run
    trained with a sampler or loss this process lacks still opens; a missing decoder that
    came from a plugin is named with the plugin (``components.json``).
    """
    from emu_dgl.config import config_from_dict
    from emu_dgl.device import resolve_device
    from emu_dgl.errors import DataError, shown
    from emu_dgl.training.build import EVALUATION_KINDS, model_from_config
    from emu_dgl.training.components import check_run_components
    from emu_dgl.training.inverse import model_relations
    from emu_dgl.training.run import (
        check_run_files,
        match_data,
        read_data_record,
        read_run_config,
    )
    from emu_dgl.training.rundata import load_run_dataset
    from emu_dgl.training.shards import enclosing_run, run_weights

    if which not in ("best", "last"):
        raise ConfigError(f"which must be 'best' or 'last', got {which!r}")
    run_dir = Path(run_dir).expanduser()
    config_path = run_dir / CONFIG_FILE
    enclosing = enclosing_run(run_dir)
    if enclosing is not None:
        raise RunError(
            f"'{run_dir}' is part of the run on several processes '{enclosing}'; pass the run "
            f"itself ('{enclosing}'): its weights are read from every process's part"
        )
    if not os.path.lexists(config_path):
        raise RunError(
            f"'{run_dir}' is not an emu-dgl run directory (no {CONFIG_FILE}); pass the folder 'emu-dgl train' wrote"
        )
    check_run_files(run_dir)  # a planted link or FIFO is refused before anything is read
    config = config_from_dict(read_run_config(run_dir))
    check_run_components(config, run_dir, kinds=EVALUATION_KINDS)
    target = resolve_device(device, key="--device")
    state, path = run_weights(run_dir, which)
    check_model_config(state, config, path)
    if data_dir is not None:
        config.dataset.data_dir = data_dir
    kg = match_data(load_run_dataset(run_dir, config), read_data_record(run_dir), run_dir)
    saved_fp = state.get("data_fingerprint")
    if saved_fp is not None and saved_fp != kg.fingerprint:
        raise DataError(
            f"dataset '{kg.name}' is not the data run '{run_dir}' was trained on (fingerprint differs)"
        )
    model = model_from_config(
        config, kg.num_entities, model_relations(config, kg.num_relations), kg=kg
    )
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        detail = str(exc).strip().splitlines()
        reason = detail[-1].strip() if detail else type(exc).__name__
        raise RunError(
            f"the weights in '{path}' do not fit the model '{config_path}' describes "
            f"({shown(reason, 160)}); restore config.yaml (a new model needs a new run)"
        ) from None
    model = model.to(target).eval()
    return RunResult(config, kg, model, run_dir, final_metrics(run_dir), which)


def check_model_config(state: dict[str, Any], config: Config, path: Path) -> None:
    """Refuse weights saved for another model than ``config`` describes, in one line.

    Checkpoints written before ``model_config`` existed are checked against the config they
    carry (``last.pt``), else only by the shapes of their tensors when they are loaded.
    """
    saved = state.get("model_config")
    if not isinstance(saved, dict):
        saved = (
            state.get("config", {}).get("model") if isinstance(state.get("config"), dict) else None
        )
    if not isinstance(saved, dict):
        return
    now = model_config(config)
    differ = [(k, saved[k], now[k]) for k in now if k in saved and saved[k] != now[k]]
    if differ:
        shown_ = ", ".join(
            f"model.{k} {a!r} in the checkpoint, {b!r} in config.yaml" for k, a, b in differ
        )
        raise RunError(
            f"'{path}' was trained as another model than '{path.parent.parent / CONFIG_FILE}' describes "
            f"({shown_}); restore config.yaml (a new model needs a new run)"
        )

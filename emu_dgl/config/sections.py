"""The sections of a run's config: typed keys with commented defaults.

Each section holds the keys every run has (the dataclass fields below, with their defaults
and meaning). A section that names components also holds their options, declared by the
components themselves (:class:`~emu_dgl.config.options.Section`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from emu_dgl.config.options import Section
from emu_dgl.config.values import canonical_choice, check_output_dir, int_list
from emu_dgl.errors import ConfigError, shown
from emu_dgl.files import write_atomic
from emu_dgl.registry import KINDS, registry_key

__all__ = [
    "COMPONENT_KEYS",
    "MAX_LR",
    "MAX_SEED",
    "Config",
    "Section",
]

#: The largest learning rate: above it Adam's first update overflows float32 (no run
#: learns anything at such rates; every optimizer has diverged long before).
MAX_LR = 1e30

#: The largest seed: DGL's generator takes 32-bit signed seeds, NumPy's non-negative ones.
MAX_SEED = 2**31 - 1

#: Keys whose value names a registered component (checked by the registries, see
#: :func:`emu_dgl.training.build.check_components`).
COMPONENT_KEYS = tuple(r.config_key for r in KINDS.values())


# --------------------------------------------------------------------------- sections


@dataclass(eq=False)
class DatasetConfig(Section):
    section: ClassVar[str] = "dataset"
    name: str = "synthetic"  # catalogue name (fb15k-237, wn18rr, nations, ...), 'synthetic', or a folder of TSVs
    data_dir: str | None = (
        None  # data root; default: $EMU_DGL_DATA, ./datasets, then a per-user cache
    )
    inverse_triples: bool = False  # also train on (t, r_inverse, h) for every training triple, with a relation r_inverse of its own per relation; heads are then ranked as tails of r_inverse (PyKEEN's create_inverse_triples)


@dataclass(eq=False)
class ModelConfig(Section):
    """The decoder (``name``) and the encoder (``encoder``), each with its options
    (``emu-dgl components decoder``, ``emu-dgl components encoder`` list them; the
    encoder's keys are ``encoder_<option>``)."""

    section: ClassVar[str] = "model"
    name: str = "transe"  # the decoder (a registered name: emu-dgl components decoder)
    encoder: str = "table"  # what the decoder scores: table (entity id -> row) | rgcn | compgcn: GNNs over the training graph (README "Encoders"; emu-dgl components encoder)
    dim: int = (
        100  # embedding width d (a decoder may store more reals per row: complex entities hold 2d)
    )
    dtype: Literal["float32", "bfloat16"] = (
        "float32"  # storage of the entity table: bfloat16 halves it (arithmetic stays float32; needs row-wise updates)
    )


@dataclass(eq=False)
class SamplerConfig(Section):
    """The negative sampler (``name``), how many it draws and how they are used; the
    sampler's own options (SANS's ``k_hop``, ``walks``, ...) come with it."""

    section: ClassVar[str] = "sampler"
    name: str = "uniform"  # the negative sampler (a registered name: emu-dgl components sampler)
    num_negatives: int = 256  # negatives per positive (n)
    filter: bool = True  # redraw negatives that are known training triples
    bernoulli: bool = (
        False  # choose head/tail per triple by relation statistics instead of alternating
    )
    shared_chunk: int = 0  # 0: each positive draws its own negatives (every paper config); C: chunks of C positives share one draw, scored as matrix products (samplers whose draw ignores the positive; see README "Shared negatives")


@dataclass(eq=False)
class EMUConfig(Section):
    """EMU's loss settings; the mutation (``variant``) declares its own options (``p``...)."""

    section: ClassVar[str] = "emu"
    enabled: bool = True  # embedding mutation (Takamoto et al., TMLR 2025)
    variant: str = "emu"  # the mutation (emu: per-coordinate mask, mixup, label_smoothing: none; emu-dgl components mutation)
    neg_label: float = 0.53  # soft target (lambda) of each mutated negative
    ce_coef: float = 0.11  # weight c of the one-hot loss on the unmutated negatives
    separate_draws: bool = False  # draw the EMU term's negatives apart from the one-hot term's (published for uniform negatives; costs a second scoring pass)


@dataclass(eq=False)
class LossConfig(Section):
    """The loss (``name``) and the regulariser; each declares its own options."""

    section: ClassVar[str] = "loss"
    name: str = "softmax"  # the loss (with EMU: the loss of the unmutated negatives; emu-dgl components loss)
    regularizer: str = (
        "none"  # the regulariser (none, n3, l3_table, ...: emu-dgl components regularizer)
    )


@dataclass(eq=False)
class TrainConfig(Section):
    section: ClassVar[str] = "train"
    max_steps: int = 1000
    max_epochs: int = 0  # > 0: train this many epochs (passes over the training triples, floor(N / batch_size) steps each) instead of max_steps
    batch_size: int = 1000  # positive triples per step
    lr: float = 0.1
    optimizer: str = "adagrad"  # the optimizer (adagrad, adam, rowwise_adagrad: one accumulator per entity row; emu-dgl components optimizer)
    sparse: bool | Literal["auto"] = (
        "auto"  # entity gradients as touched rows only: auto | true | false (see README "Large graphs")
    )
    schedule: Literal["none", "step", "reference"] = (
        "none"  # none | step (lr *= lr_decay every lr_decay_every steps) | reference (the published EMU scripts: Adagrad, then Adam at lr/10 from max_steps/2)
    )
    lr_decay: float = 0.1
    lr_decay_every: int = (
        0  # step schedule period; reference schedule: first switch (0 = max_steps // 2)
    )
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    valid_every: int = 500  # 0 = validate only at the end
    early_stopping: int = 0  # stop after this many validations without improvement (0 = never)
    checkpoint_every: int = 500  # 0 = only at the end
    log_every: int = 50
    progress: bool = True  # tqdm progress bar
    threads: int = 0  # CPU threads for torch; 0 = half the usable cores (at most 8); 1 is best on a busy machine
    cuda_graph: bool | Literal["auto"] = (
        "auto"  # capture the whole step as a CUDA graph after a few eager steps: auto (on for CUDA) | true | false
    )
    compile: bool | Literal["auto"] = (
        "auto"  # torch.compile(fullgraph=True) of the step's pure parts: auto (a per-positive step on a CPU when the run is long enough to repay compiling; see README "The training step") | true | false
    )


@dataclass(eq=False)
class EvalConfig(Section):
    section: ClassVar[str] = "eval"
    batch_size: int = 256  # queries scored at once against all entities
    valid_max_triples: int = (
        0  # periodic validation on the first N valid triples (0 = all); final metrics use all
    )
    metric: str = "mrr"  # model selection metric: mrr | amri | hits@k for a k of hits_at
    hits_at: list[int] = field(
        default_factory=lambda: [1, 3, 10]
    )  # the k of every Hits@k reported, e.g. [1, 3, 10, 100]
    per_relation: bool = False  # final metrics also per relation (metrics.json "per_relation")
    protocol: Literal["full", "sampled"] = (
        "full"  # full (rank against every entity) | sampled (OGB-style: against num_negatives filtered entities per query and side, drawn from eval.seed; OGB's own fixed negatives are not used)
    )
    num_negatives: int = 500  # sampled protocol: candidate entities per query and side, filtered
    seed: int = (
        0  # sampled protocol: seed of the candidates (the same for every run and evaluation)
    )


@dataclass(eq=False)
class OutputConfig(Section):
    section: ClassVar[str] = "output"
    dir: str = (
        "runs/{dataset}-{model}-{time}"  # run directory; {dataset}, {model}, {time} are filled in
    )


@dataclass(eq=False)
class TrackingConfig(Section):
    section: ClassVar[str] = "tracking"
    backends: list[str] = field(
        default_factory=list
    )  # any of tensorboard, mlflow, wandb (pip install "emu-dgl[track]"); metrics.jsonl is always written
    project: str = "emu-dgl"  # MLflow experiment / W&B project
    name: str | None = None  # run name in the tracker; default: the run directory's name
    mlflow_uri: str | None = None  # MLflow tracking URI; default: sqlite store in the run directory
    wandb_mode: Literal["offline", "online", "disabled"] = (
        "offline"  # offline (sync later with `wandb sync`) | online | disabled
    )


@dataclass(eq=False)
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    emu: EMUConfig = field(default_factory=EMUConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def sections(self) -> list[Section]:
        return [getattr(self, f.name) for f in fields(self)]

    def to_dict(self) -> dict[str, Any]:
        """The resolved config: every field, and the options of the components in use."""
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def dump(self, path: Path) -> None:
        write_atomic(path, self.to_yaml(), "config file")

    def options_for(self, key: str) -> dict[str, Any]:
        """The options of the component that ``key`` (``"model.name"``, ...) names."""
        registry = next(r for r in KINDS.values() if r.config_key == key)
        return getattr(self, registry.section).options_of(registry)

    def validate(self) -> Config:
        """Reject impossible values; returns self so calls chain.

        Types and ranges only: whether a component name (``model.name``, ``sampler.name``,
        ...) is known is the business of the registries, checked by
        :func:`emu_dgl.training.build.check_components` before a run starts. Names are
        stored in their canonical spelling (lower case, ``-`` read as ``_``), so the code
        that reads the config compares exact strings. The options of the components are
        checked against their declarations, and each named component's own cross-key
        rules (its ``check_config``) run last.
        """
        for key in COMPONENT_KEYS:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            _need(
                isinstance(value, str) and value.strip() != "",
                key,
                f"expected a name, got {shown(value)}",
            )
            setattr(getattr(self, section), name, registry_key(value))
        self._check_fields()
        for part in self.sections():
            part.check_options()
        for part in self.sections():
            for _, component in part.components():
                check = getattr(component, "check_config", None)
                if check is not None:
                    check(self)
        return self

    def _check_fields(self) -> None:
        self.train.device = self.train.device.strip().lower()
        _need(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.train.device) is not None,
            "train.device",
            f"'{self.train.device}' is not one of auto, cpu, cuda, cuda:N",
        )
        for part in self.sections():
            for f in fields(part):  # type: ignore[arg-type]
                value = getattr(part, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(
                        f"{part.section}.{f.name}: must be a finite number, got {value}"
                    )
        _need(
            self.dataset.name.strip() != "",
            "dataset.name",
            "is empty; name a dataset (e.g. nations, 'emu-dgl datasets list') or a folder of TSV files",
        )
        _need(
            self.output.dir.strip() != "",
            "output.dir",
            "is empty, which would write into the working folder; e.g. runs/{dataset}-{model}-{time}",
        )
        check_output_dir(self.output.dir)
        for key in ("train.seed", "eval.seed"):
            section, name = key.split(".")
            seed = getattr(getattr(self, section), name)
            _need(
                0 <= seed <= MAX_SEED,
                key,
                f"must be in [0, {MAX_SEED}] (the range every random generator of a run accepts), got {shown(seed)}",
            )
        _need(self.model.dim > 0, "model.dim", f"must be positive, got {self.model.dim}")
        self._check_sampling()
        self._check_train()
        self._check_eval()
        backends = self.tracking.backends
        if isinstance(backends, str):  # --set tracking.backends=tensorboard,mlflow
            backends = [b for b in backends.split(",") if b.strip()]
        if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
            raise ConfigError(f"tracking.backends: expected a list of names, got {shown(backends)}")
        self.tracking.backends = list(dict.fromkeys(registry_key(b) for b in backends))

    def _check_sampling(self) -> None:
        _need(self.sampler.num_negatives > 0, "sampler.num_negatives", "must be positive")
        chunk = self.sampler.shared_chunk
        _need(chunk >= 0, "sampler.shared_chunk", f"must be >= 0 (0 = per-positive), got {chunk}")
        _need(
            chunk == 0 or self.train.batch_size % chunk == 0,
            "sampler.shared_chunk",
            f"({chunk}) must divide train.batch_size ({self.train.batch_size}); e.g. sampler.shared_chunk={self.train.batch_size}",
        )
        _need(0.0 <= self.emu.neg_label <= 1.0, "emu.neg_label", "must be in [0, 1]")
        _need(self.emu.ce_coef >= 0.0, "emu.ce_coef", "must be >= 0")

    def _check_train(self) -> None:
        cfg = self.train
        _need(cfg.max_steps > 0, "train.max_steps", "must be positive")
        _need(cfg.max_epochs >= 0, "train.max_epochs", "must be >= 0 (0 = use max_steps)")
        _need(cfg.batch_size > 0, "train.batch_size", "must be positive")
        _need(
            0 < cfg.lr <= MAX_LR,
            "train.lr",
            f"must be in (0, {MAX_LR:g}], got {cfg.lr:g} (larger rates overflow the optimizers' float32 updates)",
        )
        _need(0 < cfg.lr_decay <= 1, "train.lr_decay", "must be in (0, 1]")
        _need(
            cfg.schedule != "step" or cfg.lr_decay_every > 0,
            "train.lr_decay_every",
            "must be positive with train.schedule=step",
        )
        for key in ("valid_every", "checkpoint_every", "early_stopping", "lr_decay_every"):
            _need(getattr(cfg, key) >= 0, f"train.{key}", "must be >= 0")
        _need(cfg.log_every > 0, "train.log_every", "must be positive")
        _need(cfg.threads >= 0, "train.threads", "must be >= 0 (0 = automatic)")

    def _check_eval(self) -> None:
        ks = int_list(self.eval.hits_at, "eval.hits_at") or []  # --set eval.hits_at=1,3,10
        _need(
            bool(ks) and all(k > 0 for k in ks),
            "eval.hits_at",
            f"expected a list of positive integers such as [1, 3, 10, 100], got {shown(self.eval.hits_at)}",
        )
        self.eval.hits_at = sorted(set(ks))
        self.eval.metric = canonical_choice(
            "eval.metric",
            self.eval.metric,
            ["mrr", "amri", *(f"hits@{k}" for k in self.eval.hits_at)],
        )
        _need(self.eval.batch_size > 0, "eval.batch_size", "must be positive")
        _need(self.eval.num_negatives > 0, "eval.num_negatives", "must be positive")
        _need(self.eval.valid_max_triples >= 0, "eval.valid_max_triples", "must be >= 0")


def _need(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {msg}")

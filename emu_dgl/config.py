"""Typed run configuration: dataclasses with commented defaults, YAML, ``--set`` overrides.

A run is described by one :class:`Config`. It is built from (in order) the
defaults below, a YAML file, and dotted ``--set section.key=value`` overrides.
Unknown keys and impossible values are rejected before any work starts, with the
key path and the nearest valid key. The resolved config is written into every
run directory (``config.yaml``), so a run can be resumed and reproduced.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import string
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from emu_dgl.errors import ConfigError, EmuDglError, shown
from emu_dgl.files import read_bytes, write_atomic
from emu_dgl.registry import registry_key

#: The packaged quickstart config (DistMult + EMU on the built-in synthetic graph): what
#: ``emu-dgl train`` runs without ``--config``, found wherever emu-dgl is installed.
QUICKSTART = Path(__file__).resolve().parent / "configs" / "quickstart.yaml"


@dataclass
class DatasetConfig:
    name: str = "synthetic"  # catalogue name (fb15k-237, wn18rr, nations, ...), 'synthetic', or a folder of TSVs
    data_dir: str | None = (
        None  # data root; default: $EMU_DGL_DATA, ./datasets, then a per-user cache
    )


@dataclass
class ModelConfig:
    name: str = "transe"  # transe | distmult | complex | rotate | protate | transd | hake
    dim: int = 100  # embedding width d (ComplEx/RotatE/TransD/HAKE entities hold 2d reals)
    gamma: float = 12.0  # margin of the distance decoders (transe, rotate, protate, transd, hake)
    p_norm: int = 1  # norm of transe/transd: 1 or 2
    modulus_weight: float = 1.0  # hake: initial weight of the modulus distance (learnt)
    phase_weight: float = (
        0.5  # hake: initial weight of the phase distance, times (gamma + 2) / dim (learnt)
    )
    dtype: Literal["float32", "bfloat16"] = (
        "float32"  # storage of the entity table: bfloat16 halves it (arithmetic stays float32; needs row-wise updates)
    )


@dataclass
class SamplerConfig:
    name: str = "uniform"  # uniform | sans (structure-aware, Ahrabian et al. 2020)
    num_negatives: int = 256  # negatives per positive (n)
    k_hop: int = 3  # sans: neighbourhood radius k
    walks: int = 1000  # sans: random walks (records) per entity; 0 = exact k-hop sets; -1 = walk on the fly per batch
    walk_mode: Literal["continue", "restart"] = (
        "continue"  # sans walks: continue (one walk of k*walks steps, every k-th node: the published SANS/EMU code) | restart (walks independent k-step walks: all within k hops)
    )
    weighted: bool = False  # sans: draw candidates by how often the walks hit them (true) or uniformly over the distinct ones (false, published)
    filter: bool = True  # redraw negatives that are known training triples
    bernoulli: bool = (
        False  # choose head/tail per triple by relation statistics instead of alternating
    )


@dataclass
class EMUConfig:
    enabled: bool = True  # embedding mutation (Takamoto et al., TMLR 2025)
    variant: str = "emu"  # emu (per-coordinate mask) | mixup (Beta(2,1) weight) | label_smoothing (no mutation)
    p: float = (
        0.39  # probability that a coordinate of a mutated negative keeps the negative's value
    )
    neg_label: float = 0.53  # soft target (lambda) of each mutated negative
    ce_coef: float = 0.11  # weight c of the one-hot loss on the unmutated negatives
    separate_draws: bool = False  # draw the EMU term's negatives apart from the one-hot term's (published for uniform negatives; costs a second scoring pass)


@dataclass
class LossConfig:
    name: str = "softmax"  # softmax | self_adversarial | margin | 1vsall (with EMU: the loss of the unmutated negatives)
    alpha: float = 1.0  # self_adversarial temperature
    margin: float = 1.0  # margin loss
    label_smoothing: float = 0.0  # 1vsall only
    regularizer: Literal["none", "n3", "l3_table"] = (
        "none"  # none | n3 (per-batch, on the positives' embeddings) | l3_table (reg_weight * sum |x|^3 over the whole entity and relation tables, every step: the published base arms)
    )
    reg_weight: float = 0.0  # weight of the regulariser


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 1000  # positive triples per step
    lr: float = 0.1
    optimizer: str = "adagrad"  # adagrad | adam | rowwise_adagrad (one accumulator per entity row)
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
    compile: bool = (
        False  # run the step's pure parts through torch.compile(fullgraph=True) (any device)
    )


@dataclass
class EvalConfig:
    batch_size: int = 256  # queries scored at once against all entities
    valid_max_triples: int = (
        0  # periodic validation on the first N valid triples (0 = all); final metrics use all
    )
    metric: Literal["mrr", "hits@1", "hits@3", "hits@10"] = (
        "mrr"  # model selection metric: mrr | hits@1 | hits@3 | hits@10
    )
    per_relation: bool = False  # final metrics also per relation (metrics.json "per_relation")
    protocol: Literal["full", "sampled"] = (
        "full"  # full (rank against every entity) | sampled (against num_negatives per side, OGB style)
    )
    num_negatives: int = 500  # sampled protocol: candidate entities per query and side, filtered
    seed: int = (
        0  # sampled protocol: seed of the candidates (the same for every run and evaluation)
    )


@dataclass
class OutputConfig:
    dir: str = (
        "runs/{dataset}-{model}-{time}"  # run directory; {dataset}, {model}, {time} are filled in
    )


@dataclass
class TrackingConfig:
    backends: list[str] = field(
        default_factory=list
    )  # any of tensorboard, mlflow, wandb (pip install "emu-dgl[track]"); metrics.jsonl is always written
    project: str = "emu-dgl"  # MLflow experiment / W&B project
    name: str | None = None  # run name in the tracker; default: the run directory's name
    mlflow_uri: str | None = None  # MLflow tracking URI; default: sqlite store in the run directory
    wandb_mode: Literal["offline", "online", "disabled"] = (
        "offline"  # offline (sync later with `wandb sync`) | online | disabled
    )


@dataclass
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def dump(self, path: Path) -> None:
        write_atomic(path, self.to_yaml(), "config file")

    def validate(self) -> Config:
        """Reject impossible values; returns self so calls chain.

        Types and ranges only: whether a component name (``model.name``, ``sampler.name``,
        ...) is known is the business of the registries, checked by
        :func:`emu_dgl.training.build.check_components` before a run starts. Names are
        stored in their canonical spelling (lower case, ``-`` read as ``_``), so the code
        that reads the config compares exact strings.
        """

        def need(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: {msg}")

        for key in COMPONENT_KEYS:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            need(
                isinstance(value, str) and value.strip() != "",
                key,
                f"expected a name, got {shown(value)}",
            )
            setattr(getattr(self, section), name, registry_key(value))
        self.train.device = self.train.device.strip().lower()
        need(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.train.device) is not None,
            "train.device",
            f"'{self.train.device}' is not one of auto, cpu, cuda, cuda:N",
        )
        for section in fields(self):
            part = getattr(self, section.name)
            for f in fields(part):
                value = getattr(part, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(
                        f"{section.name}.{f.name}: must be a finite number, got {value}"
                    )
        need(
            self.dataset.name.strip() != "",
            "dataset.name",
            "is empty; name a dataset (e.g. nations, 'emu-dgl datasets list') or a folder of TSV files",
        )
        need(
            self.output.dir.strip() != "",
            "output.dir",
            "is empty, which would write into the working folder; e.g. runs/{dataset}-{model}-{time}",
        )
        _check_output_dir(self.output.dir)
        for key in ("train.seed", "eval.seed"):
            section, name = key.split(".")
            seed = getattr(getattr(self, section), name)
            need(
                0 <= seed <= MAX_SEED,
                key,
                f"must be in [0, {MAX_SEED}] (the range every random generator of a run accepts), got {shown(seed)}",
            )
        need(self.model.dim > 0, "model.dim", f"must be positive, got {self.model.dim}")
        need(
            self.model.p_norm in (1, 2), "model.p_norm", f"must be 1 or 2, got {self.model.p_norm}"
        )
        for key in ("modulus_weight", "phase_weight"):
            need(getattr(self.model, key) >= 0, f"model.{key}", "must be >= 0")
        need(self.sampler.num_negatives > 0, "sampler.num_negatives", "must be positive")
        need(self.sampler.k_hop > 0, "sampler.k_hop", "must be positive")
        need(self.sampler.walks >= -1, "sampler.walks", "must be >= 0, or -1 for walks on the fly")

        need(0.0 < self.emu.p <= 1.0, "emu.p", f"must be in (0, 1], got {self.emu.p}")
        need(0.0 <= self.emu.neg_label <= 1.0, "emu.neg_label", "must be in [0, 1]")
        need(self.emu.ce_coef >= 0.0, "emu.ce_coef", "must be >= 0")
        need(
            not (self.emu.enabled and self.loss.name == "1vsall"),
            "loss.name",
            "1vsall scores every entity and has no sampled negatives to mutate; "
            "set emu.enabled=false or pick softmax, self_adversarial or margin",
        )
        need(self.loss.reg_weight >= 0, "loss.reg_weight", "must be >= 0")
        need(
            self.loss.regularizer == "none" or self.loss.reg_weight > 0,
            "loss.reg_weight",
            f"is 0, so loss.regularizer={self.loss.regularizer} would do nothing; set a positive weight",
        )
        need(0.0 <= self.loss.label_smoothing < 1.0, "loss.label_smoothing", "must be in [0, 1)")
        need(self.train.max_steps > 0, "train.max_steps", "must be positive")
        need(self.train.batch_size > 0, "train.batch_size", "must be positive")
        need(
            0 < self.train.lr <= MAX_LR,
            "train.lr",
            f"must be in (0, {MAX_LR:g}], got {self.train.lr:g} (larger rates overflow the optimizers' float32 updates)",
        )
        need(0 < self.train.lr_decay <= 1, "train.lr_decay", "must be in (0, 1]")
        need(
            self.train.schedule != "step" or self.train.lr_decay_every > 0,
            "train.lr_decay_every",
            "must be positive with train.schedule=step",
        )
        for key in ("valid_every", "checkpoint_every", "early_stopping", "lr_decay_every"):
            need(getattr(self.train, key) >= 0, f"train.{key}", "must be >= 0")
        need(self.train.log_every > 0, "train.log_every", "must be positive")
        need(self.train.threads >= 0, "train.threads", "must be >= 0 (0 = automatic)")
        need(self.eval.batch_size > 0, "eval.batch_size", "must be positive")
        need(self.eval.num_negatives > 0, "eval.num_negatives", "must be positive")
        need(self.eval.valid_max_triples >= 0, "eval.valid_max_triples", "must be >= 0")
        backends = self.tracking.backends
        if isinstance(backends, str):  # --set tracking.backends=tensorboard,mlflow
            backends = [b for b in backends.split(",") if b.strip()]
        if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
            raise ConfigError(f"tracking.backends: expected a list of names, got {shown(backends)}")
        self.tracking.backends = list(dict.fromkeys(registry_key(b) for b in backends))
        return self


#: Keys whose value names a registered component (checked by the registries, see
#: :func:`emu_dgl.training.build.check_components`).
COMPONENT_KEYS = ("model.name", "sampler.name", "emu.variant", "loss.name", "train.optimizer")


#: The largest learning rate: above it Adam's first update overflows float32 (no run
#: learns anything at such rates; every optimizer has diverged long before).
MAX_LR = 1e30

#: The largest seed: DGL's generator takes 32-bit signed seeds, NumPy's non-negative ones.
MAX_SEED = 2**31 - 1

#: placeholders that ``output.dir`` may use.
OUTPUT_PLACEHOLDERS = ("dataset", "model", "time")


def canonical_choice(key: str, value: str, valid: list[str]) -> str:
    """``value`` in its canonical spelling (case and '-'/'_' folded), or a ConfigError."""
    folded = str(value).strip().lower()
    for candidate in (folded, folded.replace("-", "_")):
        if candidate in valid:
            return candidate
    close = difflib.get_close_matches(folded, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{key}: unknown value {shown(str(value))}{hint}; valid: {', '.join(valid)}")


def _check_output_dir(template: str) -> None:
    """``output.dir`` may only use the known ``{placeholders}``; a literal brace is ``{{``."""
    allowed = ", ".join("{" + p + "}" for p in OUTPUT_PLACEHOLDERS)
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(
            f"output.dir '{template}': {exc}; placeholders are {allowed}, write a literal brace as '{{{{' or '}}}}'"
        ) from None
    unknown = [name for name in used if name not in OUTPUT_PLACEHOLDERS]
    if unknown:
        raise ConfigError(
            f"output.dir '{template}': unknown placeholder '{{{unknown[0]}}}'; use {allowed}"
        )


# --------------------------------------------------------------------------- building


#: Spellings of booleans that YAML 1.1 (and so ``--set``) reads as true / false; the same
#: strings are accepted from Python dicts.
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _expected(annotation: Any) -> str:
    """What a field of this annotation takes, in words."""
    if typing.get_origin(annotation) is Literal:
        return ", ".join(str(v) for v in typing.get_args(annotation))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        annotation, str(annotation)
    )


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against a field annotation (str, int, float, bool, a ``Literal`` of
    choices, or a union of these such as ``bool | Literal["auto"]`` or ``str | None``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(annotation)):
            return None
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(
            f"{key}: expected {', or '.join(_expected(a) for a in args)}, got {_shown(value)}"
        )
    if origin is Literal:
        if isinstance(value, str):
            return canonical_choice(key, value, [str(v) for v in typing.get_args(annotation)])
    elif annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)  # what --set 'train.max_steps=100' gives as a string from Python
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise ConfigError(f"{key}: expected {_expected(annotation)}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A refused value, bounded, with its Python type: ``0 (int)`` for a flag given as 0."""
    return f"{shown(value)} ({type(value).__name__})"


def _merge(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    valid = [f.name for f in fields(obj)]
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in valid:
            close = difflib.get_close_matches(str(key)[:100], valid, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown config key {shown(path)}{hint} (valid here: {', '.join(valid)})"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping of keys, got {shown(value)}")
            _merge(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.lr=0.05'`` -> (['train', 'lr'], 0.05); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected section.key=value, e.g. --set train.lr=0.05")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set '{text}': the key must be section.key, e.g. train.lr")
    try:
        value = parse_yaml(raw, f"--set '{text}'") if raw.strip() else ""
    except ConfigError:
        value = raw  # not YAML: taken as the plain string it is
    return parts, value


#: At most this many YAML values, aliases expanded: a config holds a few hundred. An
#: "alias bomb" (a few lines of nested ``*alias`` references) expands to billions.
MAX_YAML_VALUES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last).

    Merge keys (``<<: *base``) work as in YAML: the mapping's own keys override the merged
    ones, and only the mapping's own keys are checked for duplicates.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise ConfigError(
                    f"duplicate key {shown(key)} at line {line} (first at line {seen[key]}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (memoised per node,
    so the count costs one visit per distinct node however far the aliases expand)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a node that (through a recursive alias) contains itself counts once
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> Python data (safe types only, duplicate keys refused, alias expansion
    bounded by :data:`MAX_YAML_VALUES`), or a ConfigError."""
    loader = None
    try:
        loader = _StrictLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise ConfigError(
                f"holds more than {MAX_YAML_VALUES} values once its aliases (*name) are expanded; "
                "a config needs a few hundred: remove the nested aliases"
            )
        return loader.construct_document(node)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(
            f"{where} is not valid YAML{at} ({shown(problem, 80)}); fix the syntax"
        ) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # e.g. a timestamp like 2024-13-45, or anchors nested past the recursion limit
        raise ConfigError(
            f"{where} holds a value YAML cannot read ({exc.__class__.__name__}); fix it"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


#: A config file larger than this is not a config (a FIFO or /dev/zero never ends).
MAX_CONFIG_BYTES = 1 << 20


def _read_yaml(path: Path) -> dict[str, Any]:
    import os

    if not os.path.lexists(path):
        raise ConfigError(f"config file '{path}' does not exist; pass an existing YAML file")
    try:
        raw = read_bytes(path, "config file", follow=True, limit=MAX_CONFIG_BYTES)
    except EmuDglError as exc:  # a FIFO, a folder, a link loop, unreadable: one line from files
        raise ConfigError(f"{exc}; pass a YAML file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {exc.start}); pass a YAML file"
        ) from None
    data = parse_yaml(text, f"config file '{path}'") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections")
    return data


def _read_chain(path: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The file and the files it ``extends`` (a path relative to it), base first, and
    the named arms of the whole chain (a later file adds arms or keys to an arm)."""
    chain: list[dict[str, Any]] = []
    arms_chain: list[tuple[Path, Any]] = []
    seen: set[Path] = set()
    while True:
        data = _read_yaml(path)
        resolved = path.resolve()
        if resolved in seen:
            raise ConfigError(
                f"config file '{path}' extends itself in a cycle; break the 'extends' chain"
            )
        seen.add(resolved)
        parent = data.pop("extends", None)
        arms_chain.append((path, data.pop("arms", None)))
        chain.append(data)
        if parent is None:
            break
        if not isinstance(parent, str):
            raise ConfigError(
                f"config file '{path}': 'extends' must be a path to another YAML file"
            )
        path = path.parent / parent
    arms: dict[str, dict[str, Any]] = {}
    for source, section in reversed(arms_chain):
        if section is None:
            continue
        if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
            raise ConfigError(
                f"config file '{source}': 'arms' must map arm names to {{section.key: value}} mappings"
            )
        for name, settings in section.items():
            arms.setdefault(str(name), {}).update({str(k): v for k, v in settings.items()})
    return chain[::-1], arms


def config_arms(path: str | Path) -> dict[str, dict[str, Any]]:
    """The named arms of a config file (its ``arms:`` section and those of the files it
    extends): ``{name: {"section.key": value}}``, in file order."""
    return _read_chain(Path(path))[1]


def _apply(config: Config, dotted: str, value: Any, origin: str) -> None:
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{origin} '{dotted}': the key must be section.key, e.g. train.lr")
    _merge(config, {parts[0]: {parts[1]: value}})


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    arm: str | None = None,
    validate: bool = True,
) -> Config:
    """Defaults, then the YAML file (if any), then its ``arm``, then ``--set`` overrides; validated.

    A YAML file may start with ``extends: other.yaml`` (relative to itself): the other
    file is applied first, so families of configs share one base. It may also name
    *arms*, variants of itself that differ in a few keys::

        arms:
          sans-base: {sampler.name: sans, emu.enabled: false}

    ``arm`` picks one of them (``emu-dgl train --arm sans-base``); the arms of a file
    are what ``emu-dgl compare`` runs by default.
    """
    config = Config()
    if arm is not None and path is None:
        raise ConfigError(f"arm '{arm}' needs a config file that defines it (pass --config)")
    if path is not None:
        chain, arms = _read_chain(Path(path))
        for data in chain:
            _merge(config, data)
        if arm is not None:
            if arm not in arms:
                valid = ", ".join(arms) if arms else "none: the file has no 'arms' section"
                raise ConfigError(f"config file '{path}' has no arm '{arm}' (arms: {valid})")
            for dotted, value in arms[arm].items():
                _apply(config, dotted, value, f"arm '{arm}':")
    for text in overrides:
        parts, value = parse_override(text)
        nested: dict[str, Any] = {parts[0]: {parts[1]: value}}
        _merge(config, nested)
    return config.validate() if validate else config


def config_from_dict(data: dict[str, Any], *, validate: bool = True) -> Config:
    """A config from a (possibly partial) nested dict; missing keys take their defaults."""
    config = Config()
    _merge(config, data)
    return config.validate() if validate else config

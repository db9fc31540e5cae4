"""How the training step runs, and the checks every step must pass.

* eager: :class:`~emu_dgl.training.step.TrainStep` itself;
* compiled (``train.compile``): :func:`compile_step` runs its pure parts through
  ``torch.compile(fullgraph=True)``; :class:`CompiledStep` falls back to the eager step in
  one line when compiling fails; ``auto`` compiles where :func:`compile_pays` says it pays;
* graphed (``train.cuda_graph``): :class:`GraphedStep` captures the whole step once per
  static side as a CUDA graph and replays it;
* :func:`step_runner` picks one from the config, saying in one line why a requested mode
  is off;
* :class:`forbid_host_sync` and :func:`aten_ops_per_call`: what a step may not do (wait for
  the device) and what it costs on a launch-bound GPU (ATen operations).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from emu_dgl.typing import Side

if TYPE_CHECKING:
    from emu_dgl.training.step import TrainStep

__all__ = [
    "AUTO_COMPILE_WORK",
    "CompiledStep",
    "GraphedStep",
    "aten_ops_per_call",
    "compile_pays",
    "compile_step",
    "forbid_host_sync",
    "notice",
    "step_runner",
]


def compile_step(step: TrainStep, *, backend: str = "inductor") -> None:
    """``train.compile``: run ``draw`` and ``objective`` through ``torch.compile`` with
    ``fullgraph=True`` (a graph break is an error, not a silent fallback). The first call
    compiles one graph per static side.

    Every step object and side is its own specialisation of the same functions, so a
    process that builds many trainers (``tune``, ``compare``) raises dynamo's limit on
    recompilations of one function (8 by default) to at least 64.
    """
    import torch._dynamo

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, 64)
    step.draw = torch.compile(step.draw, fullgraph=True, dynamic=False, backend=backend)  # type: ignore[method-assign]
    step.objective = torch.compile(step.objective, fullgraph=True, dynamic=False, backend=backend)  # type: ignore[method-assign]


#: ``train.compile: auto`` compiles a CPU step when the eager run would touch at least this
#: many entity-row coordinates in broadcast scoring (steps x (positive, negative) pairs x
#: row width): compiling takes tens of seconds on a small CPU and saves a fifth to two thirds
#: of such a step (measured, README "The training step"), so below about this much work it
#: does not pay.
AUTO_COMPILE_WORK = 3 * 10**10


def compile_pays(step: TrainStep, max_steps: int, device: torch.device) -> str | None:
    """Why ``train.compile: auto`` compiles ``step`` (a reason to print), or ``None``.

    Only on a CPU, for a pure step whose scoring broadcasts (every per-positive step; a
    shared step of a decoder without the matrix-product form, such as TransE-L1 or RotatE,
    where the compiler fuses the ``[C, n, d]`` chain into one loop), and only for a long run.
    A shared step of a polynomial decoder (matrix products) was measured no faster compiled,
    and on a GPU the step is replayed as a CUDA graph instead."""
    if device.type != "cpu" or step.capturable is not None:
        return None
    width = step.model.entity.weight.shape[1]
    shared = step.shares_negatives
    if shared:
        decoder = step.model.decoder
        probe = (torch.zeros(1, width), torch.zeros(1, step.model.relation.weight.shape[1]))
        if decoder.polynomial(*probe) is not None:
            return None
    pairs = step.batch_size * (1 + step.draws * step.num_negatives)
    if max_steps * pairs * width < AUTO_COMPILE_WORK:
        return None
    kind = "a shared step that broadcasts" if shared else "a per-positive step"
    return f"{kind}, on the CPU, {max_steps:,} steps"


class CompiledStep:
    """``train.compile``: the step with its pure parts compiled (:func:`compile_step`), and
    the eager step when compiling fails (no C++ compiler, an operation the compiler does not
    take): one line says why, and the failed step runs again eagerly from the same random
    state. Compiling happens at the first step of each side (and the first backward), before
    any parameter or optimizer state changes, so the retry is the step an eager run takes."""

    def __init__(self, step: TrainStep) -> None:
        self.step = step
        compile_step(step)
        self.failed = False

    def __call__(self, batch: Tensor, side: Side | None, *, step: int = 0) -> Tensor:
        if self.failed:
            return self.step(batch, side, step=step)
        state = self.step.generator.get_state()
        try:
            return self.step(batch, side, step=step)
        except Exception as exc:  # noqa: BLE001 (any compile failure: run eagerly)
            from emu_dgl.errors import EmuDglError

            if isinstance(exc, EmuDglError):
                raise
            self.failed = True
            for name in ("draw", "objective"):  # the compiled versions shadow the methods
                self.step.__dict__.pop(name, None)
            self.step.generator.set_state(state)
            notice(
                f"train.compile: compiling failed ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); continuing with the eager step"
            )
            return self.step(batch, side, step=step)


def notice(message: str) -> None:
    """A one-line notice on stderr (the run goes on)."""
    print(message, file=sys.stderr, flush=True)


class GraphedStep:
    """``train.cuda_graph``: the whole step captured once per static side, then replayed.

    The first ``warmup`` calls run the eager step on a side stream (they are real steps:
    they initialise the optimizer state, cuBLAS handles and autotuning). Then the step is
    captured with :class:`torch.cuda.CUDAGraph`: the batch is copied into a static
    tensor, the run's generator is registered with the graph
    (``register_generator_state``), and every later call is one ``replay``.

    Randomness and resume: a registered generator's Philox offset advances on every
    replay by the amount the captured kernels consume, and they consume what the eager
    step does, so after ``k`` replays ``generator.get_state()`` is the state ``k`` eager
    steps would leave. The checkpointed state therefore resumes exactly, and a resumed run
    (eager warm-up, then a new capture) draws what an uninterrupted one does.

    Recapture: the learning rate (a Python float baked into the captured update) and the
    optimizer object are part of a graph's key; a scheduler step or the reference
    schedule's switch captures a new graph. A failed capture prints one line and the run
    goes on with the eager step.
    """

    def __init__(self, step: TrainStep, *, warmup: int = 3) -> None:
        self.step, self.warmup = step, warmup
        self.graphs: dict[Any, tuple[Any, Tensor]] = {}
        self.static_batch: Tensor | None = None
        self.eager_steps = 0
        self.failed = False
        self.stream: Any = None  # the warm-up's side stream, made on first use

    def _key(self, side: Side | None) -> tuple[Any, ...]:
        optimizer = self.step.optimizer
        assert optimizer is not None
        return (side, id(optimizer), tuple(float(g["lr"]) for g in optimizer.param_groups))

    def __call__(self, batch: Tensor, side: Side | None, *, step: int = 0) -> Tensor:
        if self.failed:
            return self.step(batch, side, step=step)
        key = self._key(side)
        if key not in self.graphs and self.eager_steps < self.warmup:
            self.eager_steps += 1
            return self._on_side_stream(lambda: self.step(batch, side, step=step))
        if key not in self.graphs:
            if self.graphs and key[1:] != next(iter(self.graphs))[1:]:
                self.graphs.clear()  # a new optimizer or rate: the old graphs are stale
            try:
                self.graphs[key] = self._capture(batch, side, step)
            except Exception as exc:  # noqa: BLE001 (any capture failure: run eagerly)
                self.failed = True
                self.graphs.clear()
                notice(
                    f"train.cuda_graph: capture failed ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]}); continuing with the eager step"
                )
                return self.step(batch, side, step=step)
        graph, loss = self.graphs[key]
        assert self.static_batch is not None
        self.static_batch.copy_(batch)
        graph.replay()
        return loss.clone()

    def _on_side_stream(self, run: Callable[[], Tensor]) -> Tensor:
        if self.stream is None:
            self.stream = torch.cuda.Stream(device=self.step.words.device)
        current = torch.cuda.current_stream(self.stream.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = run()
        current.wait_stream(self.stream)
        return out

    def _capture(self, batch: Tensor, side: Side | None, step: int) -> tuple[Any, Tensor]:
        if self.static_batch is None:
            self.static_batch = batch.clone()
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.step.generator)
        torch.cuda.synchronize(self.step.words.device)
        with torch.cuda.graph(graph):
            loss = self.step(self.static_batch, side, step=step)
        return graph, loss


def aten_ops_per_call(call: Callable[[], object], *, calls: int = 2, warmup: int = 2) -> float:
    """ATen operations per call of ``call``, counted by ``torch.profiler`` on the CPU: every
    ``aten::`` event, nested ones included (on a GPU most of them are kernel launches, the
    cost of a launch-bound step). ``warmup`` calls first, outside the count."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            call()
    return sum(1 for e in prof.events() if e.name.startswith("aten::")) / calls


#: Operations whose result the host must wait for: a scalar read, or an output whose shape
#: depends on the data (boolean indexing is checked separately, by its index's dtype).
_SYNCING = (
    "_local_scalar_dense",  # .item(), float(t), bool(t), .tolist()
    "nonzero",
    "masked_select",
    "unique",
    "_unique",
    "_unique2",
    "unique_consecutive",
    "unique_dim",
    "is_nonzero",
    "equal",
)


class forbid_host_sync(TorchDispatchMode):  # noqa: N801 (used as a context manager)
    """Raise at the first operation that would make the host wait for the device.

    A CUDA graph cannot contain such an operation, and on a GPU each one stalls the
    launch queue. This checks the rule on any device (CPU included): scalar reads
    (``.item()``, ``bool(t)``, ``.tolist()``), ``nonzero``, ``unique``, ``masked_select``,
    boolean-mask indexing, and copies of a tensor to another device. Operations that a
    kernel calls internally (such as the CPU fused Adagrad reading its CPU step count)
    are below this check, as they are below a CUDA graph.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in _SYNCING:
            raise RuntimeError(f"host synchronisation in the step: aten.{name}")
        if name in ("index", "index_put", "index_put_", "_index_put_impl_"):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            for index in indices or ():
                if isinstance(index, Tensor) and index.dtype in (torch.bool, torch.uint8):
                    raise RuntimeError(
                        f"host synchronisation in the step: boolean-mask indexing (aten.{name})"
                    )
        if name in ("_to_copy", "copy_") and args and isinstance(args[0], Tensor):
            source = args[1] if name == "copy_" else args[0]
            target = args[0].device if name == "copy_" else kwargs.get("device")
            if target is not None and torch.device(target) != source.device:
                raise RuntimeError(
                    f"host synchronisation in the step: a copy from {source.device} to {target}"
                )
        return func(*args, **kwargs)


def step_runner(step: TrainStep, train: Any, device: torch.device) -> Callable[..., Tensor]:
    """The step as the ``train`` section configures it: eager, compiled (``compile``),
    graphed (``cuda_graph``). Says in one line why a requested mode is off."""
    runner: Callable[..., Tensor] = step
    compiled = train.compile is True
    if train.compile == "auto":
        why = compile_pays(step, train.max_steps, device)
        if why is not None:
            notice(f"train.compile: auto compiles the step ({why}); set it to false to skip")
            compiled = True
    if compiled:
        runner = CompiledStep(step)
    graphs = train.cuda_graph if train.cuda_graph != "auto" else device.type == "cuda"
    if not graphs:
        return runner
    why = step.capturable or (None if device.type == "cuda" else f"the device is {device.type}")
    if why is not None:
        notice(f"train.cuda_graph: off ({why}); running the eager step")
        return runner
    return GraphedStep(step)

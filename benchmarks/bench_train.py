"""Training-step throughput of emu-dgl against a minimal hand-written PyTorch step.

For each decoder (TransE L1, DistMult, ComplEx; d = 100) on WN18RR with batch 1000
and 256 uniform negatives, this times, in one process:

* ``naive_emu``: the same mathematics written plainly (gather, Bernoulli mask,
  mutate, score positives, negatives and mutated negatives, soft-target CE divided
  by n plus c times the one-hot CE, Adagrad);
* ``naive_base``: that step without EMU (one-hot CE over the plain negatives);
* ``ours_emu`` / ``ours_base``: ``Trainer.train_step`` of emu-dgl with the same
  settings (uniform sampler, no false-negative filter, as the naive step has none);
* ``ours_emu_filtered``: ours with the default false-negative filter on.

Prints one JSON object: positives per second per variant and the ratios
ours_emu / naive_emu and ours_emu / ours_base.

    python benchmarks/bench_train.py --data-dir ../shared/datasets [--steps 20]
    python benchmarks/bench_train.py --memory --data-dir ...   # peak RSS of a FB15k-237 SANS run
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.training.trainer import Trainer

P, NEG_LABEL, CE_COEF = 0.39, 0.53, 0.11


def transe(h, r, t):
    return 12.0 - (h + r - t).abs().sum(-1)


def distmult(h, r, t):
    return (h * r * t).sum(-1)


def complex_(h, r, t):
    hr, hi = h.chunk(2, -1)
    rr, ri = r.chunk(2, -1)
    tr, ti = t.chunk(2, -1)
    return ((hr * rr - hi * ri) * tr + (hr * ri + hi * rr) * ti).sum(-1)


NAIVE = {"transe": (transe, 1), "distmult": (distmult, 1), "complex": (complex_, 2)}


def naive_runner(kg, name: str, *, batch: int, negatives: int, emu: bool, lr: float):
    """A closure running one plain PyTorch step, tail corruption on even steps, head on odd."""
    score, width = NAIVE[name]
    torch.manual_seed(0)
    ent = nn.Embedding(kg.num_entities, 100 * width)
    rel = nn.Embedding(kg.num_relations, 100 * width)
    nn.init.normal_(ent.weight, std=0.1)
    nn.init.normal_(rel.weight, std=0.1)
    opt = torch.optim.Adagrad([*ent.parameters(), *rel.parameters()], lr=lr)
    train = kg.train
    gen = torch.Generator().manual_seed(0)

    def step(i: int) -> None:
        pos = train[torch.randint(len(train), (batch,), generator=gen)]
        neg_ids = torch.randint(kg.num_entities, (batch, negatives), generator=gen)
        h, r, t = ent(pos[:, 0])[:, None], rel(pos[:, 1])[:, None], ent(pos[:, 2])[:, None]
        neg = ent(neg_ids)
        tail = i % 2 == 0
        s_pos = score(h, r, t)  # [B, 1]
        s_neg = score(h, r, neg) if tail else score(neg, r, t)
        loss = -torch.log_softmax(torch.cat([s_pos, s_neg], 1), 1)[:, 0]
        if emu:
            kept = t if tail else h
            mask = (torch.rand(neg.shape, generator=gen) < P).float()
            mutated = mask * neg + (1 - mask) * kept
            s_mut = score(h, r, mutated) if tail else score(mutated, r, t)
            target = torch.full((batch, negatives + 1), NEG_LABEL)
            target[:, 0] = 1.0
            soft = -(target * torch.log_softmax(torch.cat([s_pos, s_mut], 1), 1)).sum(1) / negatives
            loss = soft + CE_COEF * loss
        opt.zero_grad()
        loss.mean().backward()
        opt.step()

    return step


def ours_runner(kg, name: str, *, batch: int, negatives: int, emu: bool, lr: float, filtered: bool):
    config = load_config(
        None,
        [
            f"model.name={name}",
            "model.dim=100",
            "sampler.name=uniform",
            f"sampler.num_negatives={negatives}",
            f"sampler.filter={str(filtered).lower()}",
            f"emu.enabled={str(emu).lower()}",
            f"train.batch_size={batch}",
            f"train.lr={lr}",
            "train.device=cpu",
        ],
    )
    trainer = Trainer(config, run_dir="/tmp/emu-dgl-bench-unused", kg=kg)
    return trainer.train_step


def time_steps(step, steps: int, warmup: int = 3) -> float:
    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    return (time.perf_counter() - start) / steps


def throughput(args) -> dict:
    kg = load_dataset("wn18rr", args.data_dir)
    out: dict = {
        "benchmark": "train_step_throughput",
        "dataset": "wn18rr",
        "batch_size": args.batch,
        "num_negatives": args.negatives,
        "dim": 100,
        "steps_timed": args.steps,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "decoders": {},
    }
    for name in args.decoders:
        lr = 0.05 if name == "transe" else 0.1
        variants = {
            "naive_base": naive_runner(
                kg, name, batch=args.batch, negatives=args.negatives, emu=False, lr=lr
            ),
            "naive_emu": naive_runner(
                kg, name, batch=args.batch, negatives=args.negatives, emu=True, lr=lr
            ),
            "ours_base": ours_runner(
                kg,
                name,
                batch=args.batch,
                negatives=args.negatives,
                emu=False,
                lr=lr,
                filtered=False,
            ),
            "ours_emu": ours_runner(
                kg,
                name,
                batch=args.batch,
                negatives=args.negatives,
                emu=True,
                lr=lr,
                filtered=False,
            ),
            "ours_emu_filtered": ours_runner(
                kg, name, batch=args.batch, negatives=args.negatives, emu=True, lr=lr, filtered=True
            ),
        }
        rates = {k: args.batch / time_steps(step, args.steps) for k, step in variants.items()}
        out["decoders"][name] = {
            "positives_per_second": {k: round(v, 1) for k, v in rates.items()},
            "ours_emu_over_naive_emu": round(rates["ours_emu"] / rates["naive_emu"], 3),
            "ours_emu_over_ours_base": round(rates["ours_emu"] / rates["ours_base"], 3),
            "ours_base_over_naive_base": round(rates["ours_base"] / rates["naive_base"], 3),
        }
    return out


def peak_memory(args) -> dict:
    """Peak resident memory of a FB15k-237 run: TransE d=100, B=1000, 256 SANS negatives, EMU."""
    config = load_config(
        None,
        [
            "dataset.name=fb15k-237",
            "model.name=transe",
            "model.dim=100",
            "sampler.name=sans",
            "sampler.num_negatives=256",
            "train.batch_size=1000",
            f"train.max_steps={args.steps}",
            "train.valid_every=0",
            "train.checkpoint_every=0",
            "train.device=cpu",
            "train.progress=false",
            "eval.valid_max_triples=2000",
        ]
        + ([f"dataset.data_dir={args.data_dir}"] if args.data_dir else []),
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer = Trainer(config, run_dir=tmp)
        metrics = trainer.fit()
        wall = time.perf_counter() - start
    with open("/proc/self/status") as handle:
        vmhwm = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM"))
    return {
        "benchmark": "train_peak_memory",
        "dataset": "fb15k-237",
        "steps": args.steps,
        "peak_rss_mb": round(vmhwm / 1024, 1),
        "target_mb": 3072,
        "preprocess_seconds": round(metrics["preprocess_seconds"], 2),
        "train_steps_per_second": round(metrics["train_steps_per_second"], 3),
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--decoders", nargs="+", default=["transe", "distmult", "complex"])
    parser.add_argument(
        "--memory", action="store_true", help="measure peak memory of a FB15k-237 run instead"
    )
    args = parser.parse_args()
    print(json.dumps(peak_memory(args) if args.memory else throughput(args), indent=2))


if __name__ == "__main__":
    main()

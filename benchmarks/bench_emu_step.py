"""Micro-benchmark of one scoring + loss step (forward and backward), per decoder.

Variants, all on the same batch (B positives, n negatives each, tail corruption):

- ``no_emu``: ``model.score_negatives`` without mutation + softmax cross-entropy;
- ``emu``: ``model.score_negatives`` with :class:`EMUMutation` + :class:`EMULoss`
  (the fast path for separable decoders: mutated scores from the unmutated terms);
- ``naive``: a minimal hand-written EMU step doing the same math: separate
  gathers, ``torch.rand(B, n, D) < p`` mask, ``where`` on the embeddings, the
  decoder's formula written out (``bmm`` for the bilinear ones) for the negatives
  and again for the mutated negatives, the same loss;
- ``mask_draw`` / ``naive_mask_draw``: the mask draw alone, ours and ``torch.rand < p``.

Prints one JSON object: seconds per step (best and median over repeats; the best is
the robust figure on a shared machine) and the ratios of the best times.

    python benchmarks/bench_emu_step.py --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from emu_dgl.models import KGEModel
from emu_dgl.models.mutation import EMUMutation
from emu_dgl.training.losses import EMULoss, SoftmaxLoss


def naive_scores(name: str, model: KGEModel, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
    """``h[B,1,D], r[B,1,Dr], t[B,m,D] -> [B,m]`` written out by hand."""
    gamma = model.decoder.gamma
    if name == "transe":
        return gamma - ((h + r) - t).abs().sum(-1)
    if name == "distmult":
        return torch.bmm(t, (h * r).transpose(1, 2)).squeeze(2)
    if name == "complex":
        h_re, h_im = h.chunk(2, -1)
        r_re, r_im = r.chunk(2, -1)
        w = torch.cat([h_re * r_re - h_im * r_im, h_re * r_im + h_im * r_re], -1)
        return torch.bmm(t, w.transpose(1, 2)).squeeze(2)
    raise ValueError(name)


def timed(
    step: Callable[[], None], *, repeats: int, warmup: int, device: torch.device
) -> tuple[float, float]:
    """(best, median) seconds over ``repeats`` calls after ``warmup`` calls."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decoders", default="transe,distmult,complex")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--entities", type=int, default=40943)  # WN18RR
    parser.add_argument("--relations", type=int, default=11)
    parser.add_argument("--p", type=float, default=0.39)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    device = torch.device(args.device)
    gen = torch.Generator(device=device).manual_seed(0)
    B, n = args.batch, args.negatives
    pos = torch.stack(
        [
            torch.randint(args.entities, (B,), generator=gen, device=device),
            torch.randint(args.relations, (B,), generator=gen, device=device),
            torch.randint(args.entities, (B,), generator=gen, device=device),
        ],
        dim=1,
    )
    neg_ids = torch.randint(args.entities, (B, n), generator=gen, device=device)
    mutation = EMUMutation(args.p)
    emu_loss, ce_loss = EMULoss(), SoftmaxLoss()

    results: dict[str, dict[str, float]] = {}
    for name in args.decoders.split(","):
        model = KGEModel(args.entities, args.relations, decoder=name, dim=args.dim).to(device)
        width = model.entity.weight.shape[1]

        def no_emu(model: KGEModel = model) -> None:
            s = model.score_negatives(pos, neg_ids, "tail")
            ce_loss(s.pos, s.neg).backward()
            model.zero_grad(set_to_none=True)

        def emu(model: KGEModel = model) -> None:
            s = model.score_negatives(pos, neg_ids, "tail", mutation=mutation, generator=gen)
            emu_loss(s.pos, s.neg, s.mutated).backward()
            model.zero_grad(set_to_none=True)

        def naive(model: KGEModel = model, name: str = name) -> None:
            h = model.entity(pos[:, 0]).unsqueeze(1)
            r = model.relation(pos[:, 1]).unsqueeze(1)
            t = model.entity(pos[:, 2]).unsqueeze(1)
            t_neg = model.entity(neg_ids)
            mask = torch.rand(t_neg.shape, generator=gen, device=device) < args.p
            t_mut = torch.where(mask, t_neg, t)
            s_pos = naive_scores(name, model, h, r, t).squeeze(1)
            s_neg = naive_scores(name, model, h, r, t_neg)
            s_mut = naive_scores(name, model, h, r, t_mut)
            emu_loss(s_pos, s_neg, s_mut).backward()
            model.zero_grad(set_to_none=True)

        def ours_mask(width: int = width) -> None:
            mutation.draw_mask((B, n, width), device=device, generator=gen)

        def rand_mask(width: int = width) -> None:
            _ = torch.rand((B, n, width), generator=gen, device=device) < args.p

        kw = {"repeats": args.repeats, "warmup": args.warmup, "device": device}
        steps = {
            "no_emu": no_emu,
            "emu": emu,
            "naive": naive,
            "mask_draw": ours_mask,
            "naive_mask_draw": rand_mask,
        }
        best: dict[str, float] = {}
        median: dict[str, float] = {}
        for key, step in steps.items():
            best[key], median[key] = timed(step, **kw)
        row = {f"{k}_s": round(v, 4) for k, v in best.items()}
        row |= {f"{k}_median_s": round(v, 4) for k, v in median.items()}
        row["emu_over_no_emu"] = round(best["emu"] / best["no_emu"], 3)
        row["naive_over_emu"] = round(best["naive"] / best["emu"], 3)
        results[name] = row

    print(
        json.dumps(
            {
                "benchmark": "emu_step",
                "device": str(device),
                "cpu_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "machine": platform.machine(),
                "batch": B,
                "negatives": n,
                "dim": args.dim,
                "entities": args.entities,
                "relations": args.relations,
                "p": args.p,
                "repeats": args.repeats,
                "seconds_per_step": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

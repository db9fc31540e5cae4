r"""Decoder base classes and :class:`KGEModel`, which owns the embedding tables.

Score convention everywhere: **higher = more plausible**.

A decoder maps broadcastable embeddings ``h``, ``r``, ``t`` (leading dims
broadcast, last dim is the embedding) to scores over the leading dims. The model
gathers embeddings, calls the decoder, and derives every scoring view from that
one call by unsqueezing: a batch of triples, sampled negatives, one side against
all entities (in memory-bounded entity slices).

*Separable* decoders have the form ``score = finish(sum_k terms_k)`` where term
``k`` depends on the corrupted entity only through its coordinate ``k`` (the
layout of ``terms`` follows the entity's storage, for either corrupted side).
For them the EMU-mutated negative, which takes each coordinate from the negative
or the positive, has ``terms_k`` = the negative's or the positive's ``terms_k``:
the mutated scores are a masked choice between terms already computed for the
unmutated negatives and the positive, with no second scoring pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.registry import Registry
from emu_dgl.typing import Side

if TYPE_CHECKING:
    from emu_dgl.models.mutation import Mutation


DECODERS: Registry[Decoder] = Registry("decoder")

#: Memory budget (bytes of intermediates) for one entity slice of ``score_t``/``score_h``.
SLICE_BUDGET_BYTES = 256 * 2**20


class Decoder(nn.Module):
    """Base decoder: ``forward(h, r, t) -> scores`` over broadcast leading dims.

    Subclasses set the embedding widths (in real numbers) for a model width ``dim``,
    their initialisation, and the score. The default init is the uniform range of
    Sun et al. (2019): ``U(-a, a)`` with ``a = (gamma + 2) / dim``.
    """

    separable: ClassVar[bool] = False
    #: True when entity rows are complex numbers stored as ``[re | im]``.
    complex_entities: ClassVar[bool] = False

    def __init__(self, dim: int, *, gamma: float = 12.0) -> None:
        super().__init__()
        if dim < 1:
            raise ConfigError(f"model.dim is {dim} but must be a positive integer")
        self.dim = int(dim)
        self.gamma = float(gamma)

    #: Reals per entity / relation row for a model width ``dim`` (2 for complex or projected rows).
    entity_factor: ClassVar[int] = 1
    relation_factor: ClassVar[int] = 1
    #: Names of the ``dim``-wide column blocks of an entity / relation row, in order (what
    #: ``emu-dgl export`` writes into meta.json), e.g. ``("re", "im")`` for complex rows.
    entity_blocks: ClassVar[tuple[str, ...]] = ("embedding",)
    relation_blocks: ClassVar[tuple[str, ...]] = ("embedding",)
    #: Blocks stored as ``w`` whose angle in radians is ``w * pi / a``, ``a = (gamma + 2) / dim``.
    phase_blocks: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def entity_width(cls, dim: int) -> int:
        return cls.entity_factor * dim

    @classmethod
    def relation_width(cls, dim: int) -> int:
        return cls.relation_factor * dim

    @property
    def embedding_range(self) -> float:
        return (self.gamma + 2.0) / self.dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, gamma={self.gamma}"

    @torch.no_grad()
    def reset_parameters(self, entity_weight: Tensor, relation_weight: Tensor) -> None:
        a = self.embedding_range
        entity_weight.uniform_(-a, a)
        relation_weight.uniform_(-a, a)

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    # -- one side against many candidates (evaluation) --------------------------------
    def score_tails(self, h: Tensor, r: Tensor, candidates: Tensor) -> Tensor:
        """``h[B,De], r[B,Dr], candidates[S,De] -> [B,S]``; override for a faster form."""
        return self(h.unsqueeze(1), r.unsqueeze(1), candidates.unsqueeze(0))

    def score_heads(self, candidates: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """``candidates[S,De], r[B,Dr], t[B,De] -> [B,S]``."""
        return self(candidates.unsqueeze(0), r.unsqueeze(1), t.unsqueeze(1))

    def pair_bytes(self, element_size: int) -> int:
        """Bytes of intermediates per (query, candidate) pair in ``score_tails``/``score_heads``;
        sets the entity slice under the memory budget."""
        return 3 * self.entity_width(self.dim) * element_size


class SeparableDecoder(Decoder):
    """``score = finish(terms(h, r, t).sum(-1))`` with coordinate-aligned terms.

    ``terms(h, r, t, side=s)`` has the entity width as last dim, and ``terms[..., k]``
    depends on the ``s`` entity (``h`` for ``"head"``, ``t`` for ``"tail"``) only
    through its coordinate ``k``. ``side`` also names the large (broadcast) operand,
    so implementations combine the two small ones first.

    With ``term_groups = G > 1`` the terms form G equal consecutive blocks, each
    summed on its own, and ``finish`` receives the G sums stacked on the last dim
    (HAKE: a phase sum and a modulus sum).
    """

    separable: ClassVar[bool] = True
    term_groups: ClassVar[int] = 1

    def terms(self, h: Tensor, r: Tensor, t: Tensor, *, side: Side = "tail") -> Tensor:
        raise NotImplementedError

    def finish(self, total: Tensor) -> Tensor:
        """Map the summed terms to the score."""
        return total

    def reduce(self, terms: Tensor) -> Tensor:
        if self.term_groups > 1:
            return self.finish(terms.unflatten(-1, (self.term_groups, -1)).sum(-1))
        return self.finish(terms.sum(-1))

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        side: Side = "head" if h.dim() > t.dim() or h.numel() > t.numel() else "tail"
        return self.reduce(self.terms(h, r, t, side=side))


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt`` whose gradient at 0 is 0 instead of inf/NaN (value changes by < 1e-19)."""
    return x.clamp_min(torch.finfo(x.dtype).tiny).sqrt()


@dataclass(frozen=True)
class NegativeScores:
    """Scores of a batch of positives and their negatives.

    ``pos[B]``, ``neg[B,n]``, ``mutated[B,n]`` (None without a mutation) and the
    positives' embeddings ``(h, r, t)`` (each ``[B, width]``, for regularisers).
    """

    pos: Tensor
    neg: Tensor
    mutated: Tensor | None
    embeddings: tuple[Tensor, Tensor, Tensor]


class KGEModel(nn.Module):
    """Entity and relation tables plus a decoder.

    Args:
        num_entities, num_relations: table sizes.
        decoder: a registry name (``transe``, ``distmult``, ``complex``, ``rotate``,
            ``protate``, ``transd``, ``hake``) or a :class:`Decoder` instance.
        dim: model width; the decoder decides the table widths (e.g. ``2 * dim``
            for complex entities).
        **decoder_kwargs: passed to the decoder (e.g. ``gamma``, ``p_norm``).
    """

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        *,
        decoder: str | Decoder = "transe",
        dim: int = 100,
        **decoder_kwargs: object,
    ) -> None:
        super().__init__()
        if isinstance(decoder, Decoder):
            if decoder_kwargs:
                raise ConfigError(
                    "decoder options were given next to a decoder instance; "
                    "set them on the instance instead"
                )
            dim = decoder.dim
        else:
            decoder = DECODERS.build(decoder, dim=dim, **decoder_kwargs)
        self.decoder = decoder
        self.entity = nn.Embedding(num_entities, decoder.entity_width(dim))
        self.relation = nn.Embedding(num_relations, decoder.relation_width(dim))
        self.reset_parameters()

    @property
    def num_entities(self) -> int:
        return self.entity.num_embeddings

    @property
    def num_relations(self) -> int:
        return self.relation.num_embeddings

    def reset_parameters(self) -> None:
        self.decoder.reset_parameters(self.entity.weight, self.relation.weight)

    # -- triples -----------------------------------------------------------------------
    def score_hrt(self, hrt: Tensor) -> Tensor:
        """``hrt[B,3] -> [B]``."""
        h, t = self.entity(hrt[:, [0, 2]]).unbind(1)
        return self.decoder(h, self.relation(hrt[:, 1]), t)

    # -- one side against all entities ---------------------------------------------------
    def score_t(self, hr: Tensor, *, slice_size: int | None = None) -> Tensor:
        """``hr[B,2] -> [B,E]``: every entity as tail, in entity slices."""
        h, r = self.entity(hr[:, 0]), self.relation(hr[:, 1])
        return self._all_entities(
            lambda cand: self.decoder.score_tails(h, r, cand), hr.shape[0], slice_size
        )

    def score_h(self, rt: Tensor, *, slice_size: int | None = None) -> Tensor:
        """``rt[B,2] -> [B,E]``: every entity as head, in entity slices."""
        r, t = self.relation(rt[:, 0]), self.entity(rt[:, 1])
        return self._all_entities(
            lambda cand: self.decoder.score_heads(cand, r, t), rt.shape[0], slice_size
        )

    def score_candidates(self, query: Tensor, candidates: Tensor, side: Side) -> Tensor:
        """``query[B,2], candidates[K] -> [B,K]``: the entities ``candidates`` (the same for
        every query) as tails of ``query = [h, r]`` (``side="tail"``) or as heads of
        ``query = [r, t]`` (``side="head"``), scored as :meth:`score_t` / :meth:`score_h`
        score all entities, in candidate slices under the same memory budget."""
        if side == "tail":
            h, r = self.entity(query[:, 0]), self.relation(query[:, 1])
            score: Callable[[Tensor], Tensor] = lambda c: self.decoder.score_tails(h, r, c)  # noqa: E731
        else:
            r, t = self.relation(query[:, 0]), self.entity(query[:, 1])
            score = lambda c: self.decoder.score_heads(c, r, t)  # noqa: E731
        step = self.default_slice_size(query.shape[0])
        return torch.cat([score(self.entity(ids)) for ids in candidates.split(step)], dim=1)

    def default_slice_size(self, batch_size: int) -> int:
        """Largest entity slice whose intermediates fit :data:`SLICE_BUDGET_BYTES`."""
        per_pair = self.decoder.pair_bytes(self.entity.weight.element_size())
        return max(1, SLICE_BUDGET_BYTES // max(1, batch_size * per_pair))

    def _all_entities(
        self, score: Callable[[Tensor], Tensor], batch_size: int, slice_size: int | None
    ) -> Tensor:
        weight = self.entity.weight
        step = slice_size if slice_size is not None else self.default_slice_size(batch_size)
        if step < 1:
            raise ValueError(f"slice_size must be positive, got {step}")
        if step >= weight.shape[0]:
            return score(weight)
        return torch.cat([score(chunk) for chunk in _chunks(weight, step)], dim=1)

    # -- sampled negatives, with optional mutation ---------------------------------------
    def score_negatives(
        self,
        pos: Tensor,
        neg_ids: Tensor,
        side: Side,
        *,
        mutation: Mutation | None = None,
        generator: torch.Generator | None = None,
    ) -> NegativeScores:
        """Score positives ``pos[B,3]`` and negatives ``neg_ids[B,n]`` replacing ``side``.

        With a ``mutation``, also the mutated negatives (see
        :mod:`emu_dgl.models.mutation`). When the mutation is a coordinate mask and
        the decoder is separable, the mutated scores reuse the per-coordinate terms of
        the negatives and of the positive (``where(mask, terms_neg, terms_pos)``);
        otherwise the corrupted entity's embeddings are mutated and scored again.
        Both give the same values and gradients for the same mask.
        """
        if side not in ("head", "tail"):
            raise ValueError(f"side must be 'head' or 'tail', got {side!r}")
        batch, n = neg_ids.shape
        h, t = self.entity(pos[:, [0, 2]]).unbind(1)
        neg = self.entity(neg_ids)  # [B, n, De]
        r = self.relation(pos[:, 1])
        anchor, true = (h, t) if side == "tail" else (t, h)
        a, rel, true3 = anchor.unsqueeze(1), r.unsqueeze(1), true.unsqueeze(1)

        def triple(e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return (a, rel, e) if side == "tail" else (e, rel, a)

        decoder = self.decoder
        mask = None
        if mutation is not None and isinstance(decoder, SeparableDecoder):
            # grouped terms copy each block of the mask anyway: draw it compactly then
            mask_dtype = neg.dtype if decoder.term_groups == 1 else torch.bool
            mask = mutation.draw_mask(
                neg.shape, device=neg.device, generator=generator, dtype=mask_dtype
            )

        mutated = None
        if isinstance(decoder, SeparableDecoder):
            terms_neg = decoder.terms(*triple(neg), side=side)
            terms_pos = decoder.terms(*triple(true3), side=side)
            if mask is None:
                s_neg = decoder.reduce(terms_neg)
                s_pos = decoder.reduce(terms_pos).squeeze(1)
            else:
                sums = masked_term_sums(
                    terms_neg, terms_pos, mask, consume_mask=True, groups=decoder.term_groups
                )
                s_neg, s_pos, mutated = (decoder.finish(x) for x in sums)
        else:
            s_neg = decoder(*triple(neg))
            s_pos = decoder(h, r, t)
        if mutation is not None and mask is None:
            mutated = decoder(*triple(mutation(true3, neg, generator=generator)))
        return NegativeScores(pos=s_pos, neg=s_neg, mutated=mutated, embeddings=(h, r, t))


class _MaskedTermSums(torch.autograd.Function):
    """Sums of the negatives' terms, the positive's terms and the masked mixture.

    For ``T = terms_neg [B,n,D]``, ``P = terms_pos [B,1,D]`` and a 0/1 float mask
    ``m [B,n,D]`` (1 = the negative's coordinate):

        neg_j = sum_k T_jk,  pos = sum_k P_k,
        mut_j = sum_k (m_jk T_jk + (1 - m_jk) P_k) = pos + sum_k m_jk T_jk - sum_k m_jk P_k

    i.e. ``where(m, T, P).sum(-1)`` without materialising the mixture: both masked
    sums are batched dot products (``bmm``). The backward is
    ``dT_jk = g_neg_j + m_jk g_mut_j`` and
    ``dP_k = g_pos + sum_j g_mut_j - sum_j g_mut_j m_jk`` (one ``bmm``). With
    ``consume_mask`` the backward writes ``dT`` into the mask's memory instead of a
    fresh [B,n,D] tensor (on CPU, fresh large tensors cost more than the arithmetic);
    the graph can then be traversed once only.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        terms_neg: Tensor,
        terms_pos: Tensor,
        mask: Tensor,
        consume_mask: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        neg = terms_neg.sum(-1)
        pos = terms_pos.sum(-1)  # [B, 1]
        kept = torch.einsum("bnd,bnd->bn", terms_neg, mask)
        from_pos = torch.bmm(mask, terms_pos.transpose(1, 2)).squeeze(2)
        ctx.save_for_backward(mask)
        ctx.consume_mask = consume_mask  # type: ignore[attr-defined]
        ctx.consumed = False  # type: ignore[attr-defined]
        return neg, pos.squeeze(1), kept + (pos - from_pos)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, g_neg: Tensor, g_pos: Tensor, g_mut: Tensor
    ) -> tuple[Tensor, Tensor, None, None]:
        if ctx.consumed:  # type: ignore[attr-defined]
            raise RuntimeError(
                "the EMU scores' graph was already traversed once and its mask consumed; "
                "use masked_term_sums(..., consume_mask=False) to backward twice"
            )
        (mask,) = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_pos = (g_pos + g_mut.sum(1))[:, None, None] - torch.bmm(g_mut.unsqueeze(1), mask)
        if ctx.consume_mask:  # type: ignore[attr-defined]
            ctx.consumed = True  # type: ignore[attr-defined]
            grad_neg = mask.mul_(g_mut.unsqueeze(-1))
        else:
            grad_neg = torch.mul(mask, g_mut.unsqueeze(-1))
        return grad_neg.add_(g_neg.unsqueeze(-1)), grad_pos, None, None


def masked_term_sums(
    terms_neg: Tensor,
    terms_pos: Tensor,
    mask: Tensor,
    *,
    consume_mask: bool = False,
    groups: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(T.sum(-1), P.sum(-1), where(mask, T, P).sum(-1))`` for ``T [B,n,D]``,
    ``P [B,1,D]``, ``mask [B,n,D]`` (bool or 0/1 float), with a lean backward.

    ``consume_mask=True`` lets the backward overwrite a float ``mask`` (a bool mask is
    converted, so the caller's tensor is never touched). ``groups = G > 1`` sums G equal
    consecutive blocks of the last dim separately: each result gets a last dim of G."""
    if groups > 1:
        # Each block gets its own copy of its part of the mask: a consumed mask must not
        # share storage with a mask that another block's backward still reads.
        parts = [
            masked_term_sums(t_neg, t_pos, _own_copy(m, t_neg.dtype), consume_mask=True)
            for t_neg, t_pos, m in zip(
                terms_neg.chunk(groups, -1),
                terms_pos.chunk(groups, -1),
                mask.chunk(groups, -1),
                strict=True,
            )
        ]
        neg, pos, mut = (torch.stack(sums, dim=-1) for sums in zip(*parts, strict=True))
        return neg, pos, mut
    if mask.dtype != terms_neg.dtype:
        mask = mask.to(terms_neg.dtype)
        consume_mask = True
    return _MaskedTermSums.apply(terms_neg, terms_pos, mask, consume_mask)


def _own_copy(mask: Tensor, dtype: torch.dtype) -> Tensor:
    return mask.to(dtype=dtype, copy=True, memory_format=torch.contiguous_format)


def _chunks(weight: Tensor, step: int) -> Iterator[Tensor]:
    for start in range(0, weight.shape[0], step):
        yield weight[start : start + step]


__all__ = [
    "DECODERS",
    "SLICE_BUDGET_BYTES",
    "Decoder",
    "KGEModel",
    "NegativeScores",
    "SeparableDecoder",
    "Side",
    "masked_term_sums",
    "safe_sqrt",
]

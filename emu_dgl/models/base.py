r"""Decoder base classes and :class:`KGEModel`: tables, an encoder (:mod:`emu_dgl.encoders`,
:mod:`emu_dgl.models.encoded`) and a decoder.

Score convention everywhere: **higher = more plausible**.

A decoder maps broadcastable embeddings ``h``, ``r``, ``t`` (leading dims
broadcast, last dim is the embedding) to scores over the leading dims. The model
gathers embeddings, calls the decoder, and derives every scoring view from that
one call by unsqueezing: a batch of triples, sampled negatives, one side against
all entities (in memory-bounded entity slices).

*Tail form.* Every decoder can write a head corruption as a tail corruption:
``forward(h, r, t) == forward(t, reverse_relation(r), h)`` (DistMult: ``r``; TransE:
``-r``; ComplEx: ``conj(r)``; RotatE: ``-theta``; ...). The training step scores every
corruption in that form, ``forward(anchor, r', candidates)``, so one code path (and one
broadcast layout) serves head, tail and per-triple (Bernoulli) sides alike.

*Separable* decoders have the form ``score = finish(sum_k terms_k)`` where term
``k`` depends on the corrupted entity only through its coordinate ``k`` (the
layout of ``terms`` follows the entity's storage, for either corrupted side).
For them the EMU-mutated negative, which takes each coordinate from the negative
or the positive, has ``terms_k`` = the negative's or the positive's ``terms_k``:
the mutated scores are ``reduce(where(mask, terms_neg, terms_pos))``, a masked choice
between terms already computed in the one scoring pass, with a bool mask and no float
mask or second scoring pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.models.encoded import EncodedEntities
from emu_dgl.models.mixing import _SumsAndMaskedSums, mix_towards_first, mixed_term_sums
from emu_dgl.registry import DECODERS, Option
from emu_dgl.typing import Side

#: A static side for the whole batch, or a bool tensor ``[B]``: True corrupts the head.
SideSpec = Side | Tensor

if TYPE_CHECKING:
    from dgl import DGLGraph

    from emu_dgl.encoders import BaseEncoder
    from emu_dgl.models.mutation import Mutation
    from emu_dgl.models.shared import Polynomial


#: Memory budget (bytes of intermediates) for one entity slice of ``score_t``/``score_h``.
SLICE_BUDGET_BYTES = 256 * 2**20


class Decoder(nn.Module):
    """Base decoder: ``forward(h, r, t) -> scores`` over broadcast leading dims.

    Subclasses set the embedding widths (in real numbers) for a model width ``dim``,
    their initialisation, and the score. The default init is the uniform range of
    Sun et al. (2019): ``U(-a, a)`` with ``a = (gamma + 2) / dim``.

    A decoder is a component (:mod:`emu_dgl.registry`): it declares its ``options``
    (config keys of the ``model`` section, here ``gamma``; a subclass adds its own) and is
    built as ``Decoder(dim, **options)``. What a new decoder implements: ``forward``,
    ``reverse_relation`` (or ``tail_relation``), and where its table widths differ from
    ``dim``, ``entity_factor``/``relation_factor`` (or ``table_widths``). Its learnt
    parameters (a scalar weight, a core tensor) are ``nn.Parameter`` attributes: they
    train, checkpoint and export with the tables.
    """

    options: ClassVar[dict[str, Option]] = {
        "gamma": Option(
            12.0,
            "margin of the distance decoders; for every decoder the initial embedding range "
            "(gamma + 2) / dim",
        ),
    }

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

    @classmethod
    def table_widths(cls, dim: int, **options: object) -> tuple[int, int]:
        """``(entity width, relation width)`` of a model of width ``dim`` with these options,
        without building the decoder (the memory check sizes a run from it). A decoder
        whose widths depend on an option overrides this and its width methods."""
        return cls.entity_width(dim), cls.relation_width(dim)

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

    def reverse_relation(self, r: Tensor) -> Tensor:
        """Relation rows ``r'`` with ``forward(h, r, t) == forward(t, r', h)`` (values and
        gradients): a head corruption scored as a tail corruption. A decoder written
        outside emu-dgl implements it to train (see the module doc)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no reverse_relation(r): give it one such that "
            "forward(h, r, t) == forward(t, reverse_relation(r), h)"
        )

    def tail_relation(self, r: Tensor, side: SideSpec) -> Tensor:
        """Relation rows ``r[B, ..., Dr]`` in tail form for ``side`` (``"tail"``, ``"head"``,
        or a bool tensor ``[B]``, True where the head is corrupted): ``r`` itself where the
        tail is corrupted, :meth:`reverse_relation` where the head is. A decoder whose
        reversed rows cannot have the stored rows' form (a core tensor shared by every
        relation and not symmetric in its entity modes) overrides this to give both sides
        one form its ``forward`` reads."""
        if isinstance(side, Tensor):
            head = side.view(-1, *([1] * (r.dim() - 1)))
            return torch.where(head, self.reverse_relation(r), r)
        if side == "tail":
            return r
        if side == "head":
            return self.reverse_relation(r)
        raise ValueError(f"side must be 'head' or 'tail', got {side!r}")

    # -- one side against many candidates (evaluation) --------------------------------
    # Both take optional leading batch dims: ``h[..., B, De]`` against ``candidates[..., S,
    # De]`` gives ``[..., B, S]`` (the chunks of shared negatives, emu_dgl.models.shared).
    def score_tails(self, h: Tensor, r: Tensor, candidates: Tensor) -> Tensor:
        """``h[B,De], r[B,Dr], candidates[S,De] -> [B,S]``; override for a faster form."""
        return self(h.unsqueeze(-2), r.unsqueeze(-2), candidates.unsqueeze(-3))

    def score_heads(self, candidates: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """``candidates[S,De], r[B,Dr], t[B,De] -> [B,S]``."""
        return self(candidates.unsqueeze(-3), r.unsqueeze(-2), t.unsqueeze(-2))

    def polynomial(self, h: Tensor, r: Tensor) -> Polynomial | None:
        """The tail-side terms of ``(h, r, x)`` as a polynomial of degree <= 2 in each
        coordinate of the candidate ``x`` (see :mod:`emu_dgl.models.shared`), or ``None``.
        With one, scores against shared negatives are matrix products."""
        return None

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
        return self.reduce(self.terms(h, r, t, side=broadcast_side(h, r, t)))


def broadcast_side(h: Tensor, r: Tensor, t: Tensor) -> Side:
    """The entity that is broadcast against the others: ``"tail"`` when ``h`` has the
    relation's shape (many tails per (h, r): combine ``h`` and ``r`` first), ``"head"``
    when ``t`` has it; otherwise the larger one."""
    if h.shape[:-1] == r.shape[:-1] and t.shape[:-1] != r.shape[:-1]:
        return "tail"
    if t.shape[:-1] == r.shape[:-1] and h.shape[:-1] != r.shape[:-1]:
        return "head"
    return "head" if h.dim() > t.dim() or h.numel() > t.numel() else "tail"


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


class KGEModel(EncodedEntities, nn.Module):
    """An encoder followed by a decoder: the entity table, the encoder that maps it (and
    the training graph) to entity vectors, the relation table and the decoder.

    Args:
        num_entities, num_relations: table sizes.
        decoder: a registry name (``transe``, ``distmult``, ``complex``, ``rotate``,
            ``protate``, ``transd``, ``hake``) or a :class:`Decoder` instance.
        dim: model width; the decoder decides the table widths (e.g. ``2 * dim``
            for complex entities).
        encoder: an encoder whose ``out_width`` is the decoder's entity width (the table
            is ``in_width`` wide); ``None``: the table itself (``TableEncoder``).
        graph: the training graph a graph encoder reads (``message_graph``), not a weight.
        **decoder_kwargs: passed to the decoder (e.g. ``gamma``, ``p_norm``).
    """

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        *,
        decoder: str | Decoder = "transe",
        dim: int = 100,
        encoder: BaseEncoder | None = None,
        graph: DGLGraph | None = None,
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
        encoder = self._set_encoder(encoder, graph, decoder.entity_width(dim), dim)
        self.entity = nn.Embedding(num_entities, encoder.in_width)
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
        h, t = self.entity_rows(hrt[:, [0, 2]]).unbind(1)
        return self.decoder(h, self.relation(hrt[:, 1]), t)

    # -- one side against all entities ---------------------------------------------------
    def score_t(self, hr: Tensor, *, slice_size: int | None = None) -> Tensor:
        """``hr[B,2] -> [B,E]``: every entity as tail, in entity slices."""
        h, r = self.entity_rows(hr[:, 0]), self.relation(hr[:, 1])
        return self._all_entities(
            lambda cand: self.decoder.score_tails(h, r, cand), hr.shape[0], slice_size
        )

    def score_h(self, rt: Tensor, *, slice_size: int | None = None) -> Tensor:
        """``rt[B,2] -> [B,E]``: every entity as head, in entity slices."""
        r, t = self.relation(rt[:, 0]), self.entity_rows(rt[:, 1])
        return self._all_entities(
            lambda cand: self.decoder.score_heads(cand, r, t), rt.shape[0], slice_size
        )

    def all_tails(
        self,
        anchor: Tensor,
        rel: Tensor,
        *,
        slice_size: int | None = None,
        vectors: Tensor | None = None,
    ) -> Tensor:
        """``[B, E]``: every entity as the tail of ``(anchor[B, De], rel[B, Dr])`` (``rel``
        in tail form, see :meth:`relation_rows`), in entity slices, with autograd; the
        entities' ``vectors[E, De]`` when given (the training step's), else the model's."""
        return self._all_entities(
            lambda c: self.decoder.score_tails(anchor, rel, c), anchor.shape[0], slice_size, vectors
        )

    def score_candidates(self, query: Tensor, candidates: Tensor, side: Side) -> Tensor:
        """``query[B,2], candidates[K] -> [B,K]``: the entities ``candidates`` (the same for
        every query) as tails of ``query = [h, r]`` (``side="tail"``) or as heads of
        ``query = [r, t]`` (``side="head"``), scored as :meth:`score_t` / :meth:`score_h`
        score all entities, in candidate slices under the same memory budget."""
        if side == "tail":
            h, r = self.entity_rows(query[:, 0]), self.relation(query[:, 1])
            score: Callable[[Tensor], Tensor] = lambda c: self.decoder.score_tails(h, r, c)  # noqa: E731
        else:
            r, t = self.relation(query[:, 0]), self.entity_rows(query[:, 1])
            score = lambda c: self.decoder.score_heads(c, r, t)  # noqa: E731
        step = self.default_slice_size(query.shape[0])
        return torch.cat([score(self.entity_rows(ids)) for ids in candidates.split(step)], dim=1)

    def default_slice_size(self, batch_size: int) -> int:
        """Largest entity slice whose intermediates fit :data:`SLICE_BUDGET_BYTES`."""
        per_pair = self.decoder.pair_bytes(max(4, self.entity.weight.element_size()))
        return max(1, SLICE_BUDGET_BYTES // max(1, batch_size * per_pair))

    def _all_entities(
        self,
        score: Callable[[Tensor], Tensor],
        batch_size: int,
        slice_size: int | None,
        vectors: Tensor | None = None,
    ) -> Tensor:
        weight = self.entity_vectors() if vectors is None else vectors
        step = slice_size if slice_size is not None else self.default_slice_size(batch_size)
        if step < 1:
            raise ValueError(f"slice_size must be positive, got {step}")
        if weight.dtype in (
            torch.bfloat16,
            torch.float16,
        ):  # a table stored small: score in float32
            return torch.cat([score(chunk.float()) for chunk in _chunks(weight, step)], dim=1)
        if step >= weight.shape[0]:
            return score(weight)
        return torch.cat([score(chunk) for chunk in _chunks(weight, step)], dim=1)

    # -- sampled negatives, with optional mutation ---------------------------------------
    def relation_rows(self, relations: Tensor, side: SideSpec) -> tuple[Tensor, Tensor]:
        """``(r, r')``: the relations' rows and their tail-form rows for ``side`` (a static
        side, or a bool tensor ``[B]`` that is True where the head is corrupted)."""
        r = self.relation.weight.index_select(0, relations)
        return r, self.tail_form(r, side)

    def tail_form(self, r: Tensor, side: SideSpec) -> Tensor:
        """Relation rows ``r[B, ..., Dr]`` in tail form for ``side``: reversed where the
        head is corrupted (see :meth:`Decoder.tail_relation`)."""
        return self.decoder.tail_relation(r, side)

    def score_groups(
        self,
        anchor: Tensor,
        rel: Tensor,
        candidates: Tensor,
        *,
        mask: Tensor | None = None,
        mutated: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One scoring pass over candidate groups, as tails of ``(anchor, rel)`` (one row of
        each per batch row, any shape that views as ``[B, ..., D]``; ``rel`` in tail form,
        see :meth:`relation_rows`).

        ``candidates[B, C, De]`` (one group) or ``[B, G, C, De]``: column 0 of every group
        is the positive's true entity, the others are negatives. Returns ``(scores[B, C],
        last[B, C])``: the scores of group 0, and those of the last group after its
        mutation, which leaves column 0 (the positive) as it is:

        * ``mask[B, C, De]`` (True or 1 = the candidate's own coordinate, False or 0 = the
          positive's; column 0 all False): separable decoders mix their per-coordinate
          terms (:func:`mixed_term_sums`: with a bool mask one ``where``, the GPU's form;
          with a 0/1 float mask batched products, faster on a CPU); the others mix the
          embeddings (:func:`mix_towards_first`) and score them in the same pass as
          group 0;
        * ``mutated[B, C, De]``: embeddings of the mutated last group (Mixup), scored in
          the same pass as group 0;
        * neither: the last group unmutated.
        """
        batch = candidates.shape[0]
        shape = (batch, *([1] * (candidates.dim() - 2)), -1)
        # (already in that shape in the training step: no view, no view in backward)
        a = anchor if anchor.dim() == len(shape) else anchor.view(shape)
        r = rel if rel.dim() == len(shape) else rel.view(shape)
        decoder = self.decoder
        one_group = candidates.dim() == 3
        if mask is not None and isinstance(decoder, SeparableDecoder):
            terms = decoder.terms(a, r, candidates, side="tail")
            if one_group and mask.dtype != torch.bool and decoder.term_groups == 1:
                # both sums of the one group in one pass, one gradient tensor back
                plain, mixed = _SumsAndMaskedSums.apply(terms, mask)
                return decoder.finish(plain), decoder.finish(mixed)
            first, last = (terms, terms) if one_group else _first_last(terms)
            mixed = mixed_term_sums(last, mask, groups=decoder.term_groups)
            return decoder.reduce(first), decoder.finish(mixed)
        if mask is not None:
            last = candidates if one_group else _first_last(candidates)[1]
            mutated = mix_towards_first(last, mask.bool() if mask.dtype != torch.bool else mask)
        if mutated is not None:
            first = candidates if one_group else _first_last(candidates)[0]
            both = torch.stack([first, mutated], dim=1)  # [B, 2, C, De]: one pass
            a4, r4 = anchor.view(batch, 1, 1, -1), rel.view(batch, 1, 1, -1)
            return decoder(a4, r4, both).unbind(1)  # type: ignore[return-value]
        scores = decoder(a, r, candidates)
        return (scores, scores) if one_group else _first_last(scores)

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
        :mod:`emu_dgl.models.mutation`), drawn from ``generator``: a coordinate mask for
        EMU (:meth:`~emu_dgl.models.mutation.Mutation.draw_mask`), mixed embeddings
        otherwise. One gather of every entity row and one scoring pass
        (:meth:`score_tail_form`); values and gradients equal the direct formula.
        """
        if side not in ("head", "tail"):
            raise ValueError(f"side must be 'head' or 'tail', got {side!r}")
        kept, true = (pos[:, 0], pos[:, 2]) if side == "tail" else (pos[:, 2], pos[:, 0])
        rows = self.entity_rows(torch.cat([kept.unsqueeze(1), true.unsqueeze(1), neg_ids], dim=1))
        anchor, group = rows[:, 0], rows[:, 1:]
        r, rel = self.relation_rows(pos[:, 1], side)
        mask = mutated = None
        if mutation is not None:
            negatives = group[:, 1:]
            drawn = mutation.draw_mask(negatives.shape, device=rows.device, generator=generator)
            if drawn is not None:  # the positive's column keeps its own coordinates
                mask = torch.cat([torch.zeros_like(drawn[:, :1]), drawn.bool()], dim=1)
            else:
                mixed = mutation(group[:, :1], negatives, generator=generator)
                mutated = torch.cat([group[:, :1], mixed], dim=1)
        scores, last = self.score_groups(anchor, rel, group, mask=mask, mutated=mutated)
        h, t = (anchor, group[:, 0]) if side == "tail" else (group[:, 0], anchor)
        return NegativeScores(
            pos=scores[:, 0],
            neg=scores[:, 1:],
            mutated=last[:, 1:] if mutation is not None else None,
            embeddings=(h, r, t),
        )


def _first_last(x: Tensor) -> tuple[Tensor, Tensor]:
    """Group 0 and the last group of ``x[B, G, ...]`` (``unbind``: its backward is one
    stack, not a zero-filled gradient per view)."""
    groups = x.unbind(1)
    return groups[0], groups[-1]


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
    "mix_towards_first",
    "mixed_term_sums",
    "safe_sqrt",
]

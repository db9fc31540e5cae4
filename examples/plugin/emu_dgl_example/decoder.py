"""A decoder: RESCAL (Nickel et al., 2011), a full d x d matrix per relation."""

from emu_dgl.models import Decoder


class Bilinear(Decoder):
    """f(h, r, t) = h^T M_r t, with M_r stored as a row of d * d numbers."""

    @classmethod
    def relation_width(cls, dim: int) -> int:
        return dim * dim

    def matrix(self, r):
        return r.unflatten(-1, (self.dim, self.dim))

    def forward(self, h, r, t):
        return ((h.unsqueeze(-2) @ self.matrix(r)).squeeze(-2) * t).sum(-1)

    def reverse_relation(self, r):  # h^T M t = t^T M^T h: a head scored as a tail
        return self.matrix(r).transpose(-1, -2).flatten(-2)

"""LRURec's building blocks: the LRU layer (paper eq. 5) and the LRU block (eq. 9)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import lru_scan

__all__ = ["LRULayer", "PointWiseFeedForward", "LRUBlock"]


class LRULayer(nn.Module):
    r"""Linear recurrent unit with a complex diagonal recurrence (paper eq. 5).

    .. math::
        \Lambda = \mathrm{diag}(\exp(-\exp(\nu^{\log}) + i\exp(\theta^{\log}))),\quad
        h_k = \Lambda h_{k-1} + \exp(\gamma^{\log}) \odot B x_k,\quad
        y_k = \mathrm{LayerNorm}(\mathrm{Dropout}(\Re(C h_k)) + x_k)

    B (D -> N) and C (N -> D) are complex affine maps held as real matrices: B as one
    ``Linear(D, 2N)`` whose output is read as (re, im) pairs, C as ``Linear(2N, D)`` on the
    (re, im) pairs of h, which is exactly Re(C h) + Re(c). D = identity gives the residual.

    Args:
        hidden_size: D, the model width.
        state_size: N, the recurrent width (the paper uses N = 2D).
        r_min, r_max: ring init radius of |lambda| (paper: [0.8, 0.99]).
        max_phase: ring init phase range of lambda (paper: 2*pi).
        dropout: dropout on Re(C h) before the residual.
        layer_norm_eps: LayerNorm epsilon.
        use_layer_norm, use_residual: ablation switches (paper Table 6).
        backend: scan backend passed to :func:`recbole_lru.ops.lru_scan`.
    """

    def __init__(
        self,
        hidden_size: int,
        state_size: int,
        r_min: float = 0.8,
        r_max: float = 0.99,
        max_phase: float = 2 * math.pi,
        dropout: float = 0.2,
        layer_norm_eps: float = 1e-12,
        use_layer_norm: bool = True,
        use_residual: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.state_size = state_size
        self.use_residual = use_residual
        self.backend = backend
        self.in_proj = nn.Linear(hidden_size, 2 * state_size)
        self.out_proj = nn.Linear(2 * state_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps) if use_layer_norm else nn.Identity()
        # (nu_log, theta_log, gamma_log) in one log-scale parameter, as in the paper
        self.params_log = nn.Parameter(self.ring_init(state_size, r_min, r_max, max_phase))

    @staticmethod
    def ring_init(state_size: int, r_min: float, r_max: float, max_phase: float) -> torch.Tensor:
        """(3, N) log parameters: |lambda| uniform on the ring [r_min, r_max] in squared radius,
        phase uniform in [0, max_phase], gamma = sqrt(1 - |lambda|^2)."""
        u1 = torch.rand(state_size)
        u2 = torch.rand(state_size)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2)
        modulus = torch.exp(-torch.exp(nu_log))
        gamma_log = torch.log(torch.sqrt(1 - modulus**2))
        return torch.stack([nu_log, theta_log, gamma_log])

    def eigenvalues(self) -> tuple[torch.Tensor, torch.Tensor]:
        """lambda (N,) complex and gamma (N,) real, in the parameters' precision."""
        p = self.params_log if self.params_log.dtype == torch.float64 else self.params_log.float()
        nu, theta, gamma = torch.exp(p)
        lam = torch.polar(torch.exp(-nu), theta)
        return lam, gamma

    def _input(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """gamma * (B x): (..., D) real -> (..., N) complex."""
        bx = self.in_proj(x)
        bx = bx.float() if bx.dtype != torch.float64 else bx  # the recurrence stays in fp32+ under autocast
        bx = torch.view_as_complex(bx.unflatten(-1, (self.state_size, 2)).contiguous())
        return bx * gamma

    def _output(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm(Dropout(Re(C h)) + x): (..., N) complex -> (..., D) real."""
        y = self.out_proj(torch.view_as_real(h).flatten(-2).to(self.out_proj.weight.dtype))
        y = self.dropout(y)
        if self.use_residual:
            y = y + x
        return self.layer_norm(y)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """
        Args:
            x: (B, L, D) inputs.
            mask: (B, L) bool, True at real positions (right padding).

        Returns:
            y (B, L, D) and the recurrent states h (B, L, N) complex.
        """
        lam, gamma = self.eigenvalues()
        h = lru_scan(lam, self._input(x, gamma), mask, backend=self.backend)  # eq. 5 / Alg. 1
        return self._output(h, x), h

    def forward_packed(self, x: torch.Tensor, index: torch.Tensor, grid: tuple[int, int]):
        """The same layer on the real positions only.

        Every part of the layer but the recurrence acts on one position at a time, so it runs on
        the T real positions alone; only the scan sees the (B, L) grid, where the positions not in
        ``index`` get a zero input (exactly what a padding mask does in :meth:`forward`).

        Args:
            x: (T, D) inputs at the real positions.
            index: (T,) flat positions (row-major in the (B, L) grid) of those inputs.
            grid: (B, L).

        Returns:
            y (T, D) at the real positions and the recurrent states h (B, L, N) on the whole grid.
        """
        lam, gamma = self.eigenvalues()
        u = self._input(x, gamma)  # [T N]
        B, L = grid
        u = u.new_zeros(B * L, self.state_size).index_copy_(0, index, u).view(B, L, self.state_size)
        h = lru_scan(lam, u, None, backend=self.backend)  # eq. 5 / Alg. 1
        return self._output(h.reshape(B * L, self.state_size).index_select(0, index), x), h

    def step(self, x_t: torch.Tensor, h_prev: torch.Tensor):
        """One recurrence step: x_t (B, D), h_prev (B, N) complex -> (y_t (B, D), h_t (B, N))."""
        lam, gamma = self.eigenvalues()
        h_t = lam * h_prev + self._input(x_t, gamma)
        return self._output(h_t, x_t), h_t


class PointWiseFeedForward(nn.Module):
    """SubLayer(PFFN, x) = LayerNorm(Dropout(W2 Dropout(GELU(W1 x))) + x) (paper eqs. 8-9).

    The official code has no outer GELU (eq. 8 shows one); we follow the code.
    """

    def __init__(self, hidden_size: int, inner_size: int, dropout: float, layer_norm_eps: float,
                 use_layer_norm: bool = True, use_residual: bool = True):
        super().__init__()
        self.w_1 = nn.Linear(hidden_size, inner_size)
        self.w_2 = nn.Linear(inner_size, hidden_size)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.use_residual = use_residual
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps) if use_layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.w_2(self.dropout(self.activation(self.w_1(x)))))
        if self.use_residual:
            y = y + x
        return self.layer_norm(y)


class LRUBlock(nn.Module):
    """One LRURec block: LRUNorm followed by the PFFN sublayer (paper eq. 9)."""

    def __init__(self, hidden_size: int, state_size: int, inner_size: int, dropout: float,
                 attn_dropout: float, layer_norm_eps: float, r_min: float, r_max: float,
                 max_phase: float, use_layer_norm: bool = True, use_residual: bool = True,
                 use_pffn: bool = True, backend: str = "auto"):
        super().__init__()
        self.lru = LRULayer(hidden_size, state_size, r_min, r_max, max_phase, attn_dropout,
                            layer_norm_eps, use_layer_norm, use_residual, backend)
        self.ffn = (
            PointWiseFeedForward(hidden_size, inner_size, dropout, layer_norm_eps, use_layer_norm, use_residual)
            if use_pffn else nn.Identity()
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        y, h = self.lru(x, mask)
        return self.ffn(y), h

    def forward_packed(self, x: torch.Tensor, index: torch.Tensor, grid: tuple[int, int]):
        """x (T, D) at the real positions -> (T, D), and the states (B, L, N); see
        :meth:`LRULayer.forward_packed`."""
        y, h = self.lru.forward_packed(x, index, grid)
        return self.ffn(y), h

    def step(self, x_t: torch.Tensor, h_prev: torch.Tensor):
        y, h = self.lru.step(x_t, h_prev)
        return self.ffn(y), h

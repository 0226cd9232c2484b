"""Spiking neurons for time-stepped training, with surrogate gradients.

All neurons run on ``[B, T, ...]`` (batch, time steps, anything) and start every forward from ``v = 0``.
Per step ``t``, with input ``x_t`` (membrane units), threshold ``θ`` and decay ``α`` (1 = no leak):

    charge   v ← α·v + x_t, then v ← max(v, threshold_low)      (if ``threshold_low`` is set)
    fire     s_t = floor(v/θ) for v > 0 else 0                   (multi-spike, M-IF)
             s_t = 1[v ≥ θ]                                      (single spike, IF / LIF)
    reset    v ← v − s_t·θ  ("subtract")   or   v ← 0 where s_t > 0  ("zero")

The chip's core neuron (speck-hardware.md §1) is the single-spike IF with subtract reset, firing at
``v ≥ θ`` and leaving the remainder; per time bin it receives many events, so the time-stepped model that
matches it best is the M-IF, which emits every spike the bin's input earns at once. ``LIF`` is the
papers' GPU neuron (α = 0.3, θ = 0.3, rectangular surrogate).

Surrogates act on ``u = v/θ`` (so widths are fractions of θ and a trainable θ gets its gradient through
``u``): the forward is the exact spike rule, the backward ``∂s/∂u`` one of

- :class:`PeriodicExponential`: ``exp(−|p − ½|/w)``, ``p = u − ½`` below 1 and ``(u − ½) mod 1`` above,
  a peak at every integer ``u`` (every multiple of θ) — for M-IF (sinabs' choice);
- :class:`SingleExponential`: ``exp(−|u − 1|/w)/w`` (attention-snn.md, w = 0.5);
- :class:`Rectangular`: ``1[|u − 1| < w/2]/w`` (the papers' LIF, width 0.5).

Speed: with a fixed θ on CPU the whole loop is one autograd node (:class:`_FusedLoop`) running numba
kernels, forward and backward, one pass over memory each; a trainable θ (or another device) steps
:func:`step` under plain autograd. A test ties the two paths (same spikes, same gradients).
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numba
import numpy as np
import torch
from torch import Tensor, nn

Reset = Literal["subtract", "zero"]
RESETS: tuple[Reset, ...] = ("subtract", "zero")


def _fire(u: Tensor, multi_spike: bool) -> Tensor:
    """The exact spike rule on ``u = v/θ``."""
    return torch.clamp(torch.floor(u), min=0.0) if multi_spike else (u >= 1.0).to(u.dtype)


class PeriodicExponential(torch.autograd.Function):
    """Spike rule forward, periodic exponential surrogate backward (peaks at u = 1, 2, 3, …)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, multi_spike: bool, width: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.width = width
        return _fire(u, multi_spike)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (u,) = ctx.saved_tensors
        return grad * PeriodicExponential.derivative(u, ctx.width), None, None

    @staticmethod
    def derivative(u: Tensor, width: float) -> Tensor:
        """``∂s/∂u``."""
        shifted = u - 0.5
        p = torch.where(u >= 1.0, torch.remainder(shifted, 1.0), shifted)
        return torch.exp(-torch.abs(p - 0.5) / width)


class SingleExponential(torch.autograd.Function):
    """Spike rule forward, ``exp(−|u − 1|/w)/w`` backward."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, multi_spike: bool, width: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.width = width
        return _fire(u, multi_spike)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (u,) = ctx.saved_tensors
        return grad * SingleExponential.derivative(u, ctx.width), None, None

    @staticmethod
    def derivative(u: Tensor, width: float) -> Tensor:
        """``∂s/∂u``."""
        return torch.exp(-torch.abs(u - 1.0) / width) / width


class Rectangular(torch.autograd.Function):
    """Spike rule forward, ``1[|u − 1| < w/2]/w`` backward."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, multi_spike: bool, width: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.width = width
        return _fire(u, multi_spike)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (u,) = ctx.saved_tensors
        return grad * Rectangular.derivative(u, ctx.width), None, None

    @staticmethod
    def derivative(u: Tensor, width: float) -> Tensor:
        """``∂s/∂u``."""
        return (torch.abs(u - 1.0) < width / 2).to(u.dtype) / width


Surrogate = type[PeriodicExponential] | type[SingleExponential] | type[Rectangular]


class NeuronParams(NamedTuple):
    """How a neuron charges, fires and resets (the threshold θ lives in the module, maybe trainable)."""

    threshold_low: float | None = None
    reset: Reset = "subtract"
    decay: float = 1.0
    multi_spike: bool = True
    surrogate: Surrogate = PeriodicExponential
    width: float = 0.5


def charge(v: Tensor, x: Tensor, p: NeuronParams) -> Tensor:
    """``α·v + x``, clamped from below at ``threshold_low``."""
    v = v + x if p.decay == 1.0 else p.decay * v + x
    return v if p.threshold_low is None else torch.clamp(v, min=p.threshold_low)


def reset(v: Tensor, spikes: Tensor, threshold: Tensor, p: NeuronParams) -> Tensor:
    """Subtract ``spikes·θ`` or return to zero where the neuron fired."""
    return v - spikes * threshold if p.reset == "subtract" else v * (spikes == 0).to(v.dtype)


def step(v: Tensor, x: Tensor, threshold: Tensor, p: NeuronParams) -> tuple[Tensor, Tensor]:
    """One time step: ``(v, x) -> (new v, spike counts)``."""
    v = charge(v, x, p)
    spikes = p.surrogate.apply(v / threshold, p.multi_spike, p.width)
    return reset(v, spikes, threshold, p), spikes


SURROGATE_CODES: dict[Surrogate, int] = {PeriodicExponential: 0, SingleExponential: 1, Rectangular: 2}
"""The kernels' numbering of the surrogates."""


_EXP2_NEG = np.array([2.0**-i for i in range(150)], np.float32)
"""``2^−i``: the integer part of :func:`_exp`, looked up (down to float32's smallest subnormal)."""


@numba.njit(cache=True, inline="always", fastmath=True)
def _exp(x):  # type: ignore[no-untyped-def]
    """``e^x`` for ``x ≤ 0`` (larger x give 1) in float32 (relative error < 4e-6; < 2e-6 for x ≥ −20), as a polynomial the
    loop vectorises: numba's scalar ``exp`` call made the backward kernel 3.5× slower. ``x = (k + f)/log₂e``,
    ``k`` an integer, ``|f| ≤ ½``; ``2^f`` by Cephes' exp2f polynomial."""
    z = min(max(x, np.float32(-103.0)), np.float32(0.0)) * np.float32(1.4426950408889634)
    k = np.float32(math.floor(z + np.float32(0.5)))  # float32, or f and the polynomial go float64
    f = z - k
    p = np.float32(1.535336188319500e-4)
    p = p * f + np.float32(1.339887440266574e-3)
    p = p * f + np.float32(9.618437357674640e-3)
    p = p * f + np.float32(5.550332471162809e-2)
    p = p * f + np.float32(2.402264791363012e-1)
    p = p * f + np.float32(6.931472028550421e-1)
    p = p * f + np.float32(1.0)
    return p * _EXP2_NEG[max(min(int(-k), 149), 0)]


@numba.njit(cache=True, inline="always", fastmath=True)
def _derivative(u, kind, width):  # type: ignore[no-untyped-def]
    """``∂s/∂u`` of surrogate ``kind`` (:data:`SURROGATE_CODES`) in float32, as the classes' ``derivative``."""
    half, one = np.float32(0.5), np.float32(1.0)
    if kind == 0:
        p = u - half
        wrapped = p - np.float32(math.floor(p))  # branch-free, so that the loop vectorises
        p = wrapped if u >= one else p
        return _exp(-abs(p - half) / width)
    if kind == 1:
        return _exp(-abs(u - one) / width) / width
    return (one if abs(u - one) < width * half else np.float32(0.0)) / width


@numba.njit(cache=True, parallel=True)
def _loop_forward(x, theta, low, decay, multi, subtract, spikes, u, free):  # type: ignore[no-untyped-def]
    """The time loop over ``x`` ``[B, T, N]`` (float32); fills ``spikes``, ``u = v/θ`` and ``free`` (not clamped)."""
    for b in numba.prange(x.shape[0]):
        v = np.zeros(x.shape[2], np.float32)
        for t in range(x.shape[1]):
            for n in range(x.shape[2]):
                vn = decay * v[n] + x[b, t, n]
                free[b, t, n] = vn >= low
                vn = max(vn, low)
                un = vn / theta
                s = max(math.floor(un), np.float32(0.0)) if multi else (np.float32(1.0) if un >= 1.0 else 0)
                u[b, t, n], spikes[b, t, n] = un, s
                v[n] = vn - s * theta if subtract else (vn if s == 0 else np.float32(0.0))


@numba.njit(cache=True, parallel=True, fastmath=True)  # finite values only: no inf/NaN reach it
def _loop_backward(grad, u, spikes, free, theta, decay, subtract, kind, width, dx):  # type: ignore[no-untyped-def]
    """BPTT through the loop (:class:`_FusedLoop`); fills ``dx``."""
    for b in numba.prange(grad.shape[0]):
        delta = np.zeros(grad.shape[2], np.float32)
        for t in range(grad.shape[1] - 1, -1, -1):
            for n in range(grad.shape[2]):
                g = _derivative(u[b, t, n], kind, width) / theta
                if subtract:
                    d = delta[n] + g * (grad[b, t, n] - theta * delta[n])
                else:
                    d = g * grad[b, t, n] + (delta[n] if spikes[b, t, n] == 0 else np.float32(0.0))
                d = d if free[b, t, n] else np.float32(0.0)
                dx[b, t, n] = d
                delta[n] = decay * d


class _FusedLoop(torch.autograd.Function):
    """The whole time loop for a fixed θ as one autograd node running numba kernels: the values and
    gradients of stepping :func:`step` under autograd, in one pass over memory instead of ~20.

    Backward, with ``g_t = ∂s/∂v`` at step t and ``δ_t`` the gradient reaching ``v`` after step t's reset:
    ``∂L/∂x_t = g_t·(∂L/∂s_t − θ·δ_t) + δ_t`` (subtract; ``g_t·∂L/∂s_t + δ_t·1[s_t = 0]`` for zero
    reset), zero where ``threshold_low`` clamped, and ``δ_{t−1} = α·∂L/∂x_t``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: float, p: NeuronParams) -> Tensor:
        flat = x.detach().float().contiguous().flatten(2).numpy()
        spikes, u, free = np.empty_like(flat), np.empty_like(flat), np.empty(flat.shape, np.bool_)
        low = np.float32(-np.inf if p.threshold_low is None else p.threshold_low)
        theta, decay = np.float32(threshold), np.float32(p.decay)
        _loop_forward(flat, theta, low, decay, p.multi_spike, p.reset == "subtract", spikes, u, free)
        ctx.save_for_backward(*(torch.from_numpy(a) for a in (u, spikes, free)))
        ctx.threshold, ctx.params, ctx.shape = threshold, p, x.shape
        return torch.from_numpy(spikes).view(x.shape).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        u, spikes, free = (a.numpy() for a in ctx.saved_tensors)
        p = ctx.params
        g = grad.float().contiguous().flatten(2).numpy()
        dx = np.empty_like(g)
        _loop_backward(
            g, u, spikes, free, np.float32(ctx.threshold), np.float32(p.decay), p.reset == "subtract",
            SURROGATE_CODES[p.surrogate], np.float32(p.width), dx,
        )  # fmt: skip
        return torch.from_numpy(dx).view(ctx.shape).to(grad.dtype), None, None


class SpikingNeuron(nn.Module):
    """A layer of neurons stepping over dim 1 of ``[B, T, ...]``; returns spike counts, same shape."""

    def __init__(self, threshold: float = 1.0, params: NeuronParams | None = None, train_threshold: bool = False):
        super().__init__()
        params = NeuronParams() if params is None else params
        if threshold <= 0:
            raise ValueError(f"threshold: must be > 0, got {threshold}")
        if params.reset not in RESETS:
            raise ValueError(f"reset: must be one of {RESETS}, got {params.reset!r}")
        if not 0.0 < params.decay <= 1.0:
            raise ValueError(f"decay: must be in (0, 1], got {params.decay}")
        if not params.width > 0:
            raise ValueError(f"width: the surrogate's width must be > 0, got {params.width}")
        self.params = params
        self.threshold = nn.Parameter(torch.tensor(float(threshold)), requires_grad=train_threshold)

    def forward(self, x: Tensor) -> Tensor:
        if not self.threshold.requires_grad and x.device.type == "cpu":
            # elementwise over everything but T: run on the memory order at hand (e.g. channels-last)
            theta = float(self.threshold)
            if x.ndim == 5 and x.permute(0, 1, 3, 4, 2).is_contiguous():
                fused: Tensor = _FusedLoop.apply(x.permute(0, 1, 3, 4, 2), theta, self.params)
                return fused.permute(0, 1, 4, 2, 3)
            plain: Tensor = _FusedLoop.apply(x.contiguous(), theta, self.params)
            return plain
        v = torch.zeros_like(x[:, 0])
        out = []
        for x_t in x.unbind(1):  # unbind, not x[:, t]: one backward copy instead of T full-size ones
            v, spikes = step(v, x_t, self.threshold, self.params)
            out.append(spikes)
        return torch.stack(out, dim=1)


class MIF(SpikingNeuron):
    """Multi-spike IF (M-IF): ``floor(v/θ)`` spikes per step, no leak, periodic-exponential surrogate."""

    def __init__(
        self,
        threshold: float = 1.0,
        threshold_low: float | None = None,
        reset: Reset = "subtract",
        train_threshold: bool = False,
        surrogate: Surrogate = PeriodicExponential,
        width: float = 0.5,
    ):
        params = NeuronParams(threshold_low, reset, 1.0, True, surrogate, width)
        super().__init__(threshold, params, train_threshold)


class IF(SpikingNeuron):
    """Single-spike IF (the chip's neuron per update): one spike at ``v ≥ θ``, single-exponential surrogate."""

    def __init__(
        self,
        threshold: float = 1.0,
        threshold_low: float | None = None,
        reset: Reset = "subtract",
        train_threshold: bool = False,
        surrogate: Surrogate = SingleExponential,
        width: float = 0.5,
    ):
        params = NeuronParams(threshold_low, reset, 1.0, False, surrogate, width)
        super().__init__(threshold, params, train_threshold)


class LIF(SpikingNeuron):
    """The papers' LIF: ``v ← α·v + x``, one spike at ``v ≥ θ``, rectangular surrogate (α = 0.3, θ = 0.3)."""

    def __init__(
        self,
        threshold: float = 0.3,
        decay: float = 0.3,
        threshold_low: float | None = None,
        reset: Reset = "zero",
        train_threshold: bool = False,
        width: float = 0.5 / 0.3,  # the papers' absolute width 0.5, in units of θ = 0.3
    ):
        params = NeuronParams(threshold_low, reset, decay, False, Rectangular, width)
        super().__init__(threshold, params, train_threshold)

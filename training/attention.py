"""Attention on spiking layers (TA, CA, TCA) and the causal input temporal mask (attention-snn.md).

**Layer attention** on ``x`` ``[B, T, C, H, W]`` (a conv layer's membrane input, after conv + BN, before
the neuron):

- TA: ``s_t = σ(MLP(avg_{C,H,W} x) + MLP(max_{C,H,W} x))`` ``[B, T]``, ``MLP = W2·relu(W1·)`` T → T/r → T,
  no bias, r = 4;
- CA: the same over ``(T, H, W)`` per channel, ``[B, C]``, MLP C → C/r → C, r = 5;
- TCA: TA then CA on the TA-weighted tensor.

Modes: ``refine`` scales by the scores (``x·s_t``, then ``·s_c``) and applies ReLU; ``mask`` keeps
per sample the top ``K = ceil(keep_ratio·L)`` steps / channels and zeroes the rest, the weight being
``(s_t·m_t) × (s_c·m_c)`` broadcast over ``[T, C, H, W]``, no ReLU.

**Input temporal mask** (the chip deployment, ``emulator.attention``): frame ``t``'s features are
``f_t = [mean, max]`` of its counts over ``(C, H, W)``; the score of step ``t`` is the TA MLP on the
history ``f_{t−H} … f_{t−1}`` (oldest first, zeros before the clip), ``s_t = σ(MLP(avg) + MLP(max))[−1]``
— the frame itself is never looked at, so the decision is causal and adds no latency. Keep iff
``s_t > q_t``, ``q_t`` the ``mask_ratio`` quantile of the last ``H`` scores before ``t`` (ties: keep iff
fewer than ``1 − mask_ratio`` of those were kept; the first step is kept) — the emulator's rule, so
training sees the mask the chip's input will get. The hard 0/1 mask multiplies the frames; its gradient
goes straight through to the margin the rule decides on, ``d_t = s_t − q_t`` (``m = keep + d −
stop_grad(d)``, :func:`causal_quantile`): a step's score also sets the bar for the steps after it, and a
gradient on ``s_t`` alone ignored that (a loss asking for more kept input made the scorer keep less).
``kept_input`` after a forward is the batch's fraction of input events passed, differentiable the same
way, for ``train(keep_target=...)``. ``w1`` ``[H/r, H]`` and ``w2``
``[H, H/r]`` go to ``emulator.attention.TemporalAttentionScorer`` unchanged. One difference to the
chip: the emulator decides only windows that hold events, here every frame is decided.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

Mode = Literal["refine", "mask"]
MODES: tuple[Mode, ...] = ("refine", "mask")


class SharedMLP(nn.Module):
    """``σ(MLP(avg) + MLP(max))`` with ``MLP(v) = W2·relu(W1·v)``, no bias; ``n → max(1, n//r) → n``."""

    def __init__(self, n: int, reduction: int):
        super().__init__()
        hidden = max(1, n // reduction)
        self.fc1 = nn.Linear(n, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, n, bias=False)

    def forward(self, avg: Tensor, peak: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(avg))) + self.fc2(torch.relu(self.fc1(peak))))


def pool_hw(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and max of ``[B, T, C, H, W]`` over ``(H, W)``: ``[B, T, C]`` each. Every pooling the modules
    need follows from these two (means of equal-size groups, maxes of maxes), so the big tensor is read
    twice per block whatever the mode."""
    flat = x.flatten(3)
    return flat.mean(3), flat.max(3).values


class TemporalAttention(nn.Module):
    """TA scores ``[B, T]`` of ``[B, T, C, H, W]``."""

    def __init__(self, steps: int, reduction: int = 4):
        super().__init__()
        self.mlp = SharedMLP(steps, reduction)

    def forward(self, x: Tensor) -> Tensor:
        return self.from_pooled(*pool_hw(x))

    def from_pooled(self, mean: Tensor, peak: Tensor) -> Tensor:
        """Scores from :func:`pool_hw` ``(mean, max)``."""
        return self.mlp(mean.mean(2), peak.amax(2))


class ChannelAttention(nn.Module):
    """CA scores ``[B, C]`` of ``[B, T, C, H, W]``."""

    def __init__(self, channels: int, reduction: int = 5):
        super().__init__()
        self.mlp = SharedMLP(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        return self.from_pooled(*pool_hw(x))

    def from_pooled(self, mean: Tensor, peak: Tensor, step_weight: Tensor | None = None) -> Tensor:
        """Scores from :func:`pool_hw` ``(mean, max)`` of ``x``, for ``x·step_weight`` if given
        (``[B, T]``, ≥ 0, so the max of the product is the product of the max)."""
        if step_weight is not None:
            mean, peak = mean * step_weight[:, :, None], peak * step_weight[:, :, None]
        return self.mlp(mean.mean(1), peak.amax(1))


def top_k_mask(scores: Tensor, keep_ratio: float) -> Tensor:
    """0/1 ``[B, L]``: per row the ``ceil(keep_ratio·L)`` highest scores (ties: the lower index)."""
    k = math.ceil(keep_ratio * scores.shape[1])
    mask = torch.zeros_like(scores)
    return mask.scatter_(1, scores.topk(k, dim=1).indices, 1.0) if k > 0 else mask


class AttentionBlock(nn.Module):
    """TA, CA or TCA on ``[B, T, C, H, W]`` in ``refine`` or ``mask`` mode (module docstring)."""

    def __init__(
        self,
        steps: int,
        channels: int,
        temporal: bool = True,
        channel: bool = True,
        mode: Mode = "mask",
        keep_ratio: float = 0.5,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
        if not temporal and not channel:
            raise ValueError("temporal, channel: at least one must be on")
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio: must be in (0, 1], got {keep_ratio}")
        self.mode, self.keep_ratio = mode, keep_ratio
        self.ta = TemporalAttention(steps) if temporal else None
        self.ca = ChannelAttention(channels) if channel else None

    def _weight(self, scores: Tensor) -> Tensor:
        return scores * top_k_mask(scores.detach(), self.keep_ratio) if self.mode == "mask" else scores

    def forward(self, x: Tensor) -> Tensor:
        mean, peak = pool_hw(x)
        b, t, c = mean.shape
        w_t = self._weight(self.ta.from_pooled(mean, peak)) if self.ta is not None else None
        w_c = self._weight(self.ca.from_pooled(mean, peak, w_t)) if self.ca is not None else None
        weight = (x.new_ones(b, t, 1) if w_t is None else w_t[:, :, None]) * (
            x.new_ones(b, 1, c) if w_c is None else w_c[:, None, :]
        )  # [B, T, C]: one multiply of the big tensor
        out = x * weight[:, :, :, None, None]
        return torch.relu(out) if self.mode == "refine" else out


def TA(steps: int, channels: int, mode: Mode = "mask", keep_ratio: float = 0.5) -> AttentionBlock:
    """Temporal attention only."""
    return AttentionBlock(steps, channels, True, False, mode, keep_ratio)


def CA(steps: int, channels: int, mode: Mode = "mask", keep_ratio: float = 0.5) -> AttentionBlock:
    """Channel attention only."""
    return AttentionBlock(steps, channels, False, True, mode, keep_ratio)


def TCA(steps: int, channels: int, mode: Mode = "mask", keep_ratio: float = 0.5) -> AttentionBlock:
    """Temporal then channel attention."""
    return AttentionBlock(steps, channels, True, True, mode, keep_ratio)


def frame_features(x: Tensor) -> Tensor:
    """``[B, T, 2]``: ``[mean, max]`` of each frame of ``[B, T, C, H, W]`` over ``(C, H, W)``."""
    flat = x.flatten(2)
    return torch.stack([flat.mean(2), flat.amax(2)], dim=2)


def causal_keep(scores: Tensor, history: int, mask_ratio: float, quantiles: Tensor | None = None) -> Tensor:
    """Bool ``[B, T]``: the emulator's threshold rule (module docstring) applied step by step
    (``quantiles``: :func:`causal_quantile` of these scores, when the caller has it already)."""
    b, steps = scores.shape
    kept = torch.zeros(b, steps, dtype=torch.bool, device=scores.device)
    for t in range(steps):
        lo = max(0, t - history)
        if mask_ratio in (0.0, 1.0) or t == lo:
            kept[:, t] = mask_ratio != 1.0
            continue
        q = torch.quantile(scores[:, lo:t], mask_ratio, dim=1) if quantiles is None else quantiles[:, t]
        s = scores[:, t]
        few_kept = kept[:, lo:t].float().mean(1) < 1.0 - mask_ratio
        kept[:, t] = (s > q) | ((s == q) & few_kept)
    return kept


def causal_quantile(scores: Tensor, history: int, mask_ratio: float) -> Tensor:
    """``[B, T]``: the threshold :func:`causal_keep` compares each score with (the ``mask_ratio``
    quantile of the ``history`` scores before it), differentiable; the score itself where there is none."""
    out = []
    for t in range(scores.shape[1]):
        lo = max(0, t - history)
        out.append(scores[:, t] if t == lo else torch.quantile(scores[:, lo:t], mask_ratio, dim=1))
    return torch.stack(out, dim=1)


class InputTemporalMask(nn.Module):
    """The causal TA input mask (module docstring): frames ``[B, T, C, H, W]`` in, masked frames out.
    With ``substeps`` k > 1 the frames are ``[B, T·k, C, H, W]`` and the mask scores and keeps every k
    of them together, as one of the chip's windows (``scores`` and ``keep`` are then per window)."""

    def __init__(self, history: int = 16, reduction: int = 4, mask_ratio: float = 0.5, substeps: int = 1):
        super().__init__()
        if history < 1:
            raise ValueError(f"history: must be ≥ 1, got {history}")
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio: must be in [0, 1], got {mask_ratio}")
        if substeps < 1:
            raise ValueError(f"substeps: must be ≥ 1, got {substeps}")
        self.history, self.mask_ratio, self.substeps = history, mask_ratio, substeps
        self.mlp = SharedMLP(history, reduction)

    def windows(self, x: Tensor) -> Tensor:
        """``[B, T, C, H, W]``: the frames summed per window of ``substeps``."""
        if self.substeps == 1:
            return x
        if x.shape[1] % self.substeps:
            raise ValueError(f"input: {x.shape[1]} steps is not a multiple of substeps={self.substeps}")
        return x.unflatten(1, (x.shape[1] // self.substeps, self.substeps)).sum(2)

    def scores(self, x: Tensor) -> Tensor:
        """``[B, T]``: each window's score from the features of the ``H`` windows before it."""
        x = self.windows(x)
        feats = frame_features(x)
        padded = torch.cat([feats.new_zeros(feats.shape[0], self.history, 2), feats], dim=1)
        hist = padded.unfold(1, self.history, 1)[:, : x.shape[1]]  # [B, T, 2, H], oldest first
        return self.mlp(hist[:, :, 0], hist[:, :, 1])[..., -1]

    def score_history(self, history: Tensor) -> Tensor:
        """The score for the window after ``history`` ``[..., H, 2]`` (the emulator's ``Scorer.score``)."""
        return self.mlp(history[..., 0], history[..., 1])[..., -1]

    def keep(self, x: Tensor) -> Tensor:
        """Bool ``[B, T]``: which frames pass."""
        with torch.no_grad():
            return causal_keep(self.scores(x), self.history, self.mask_ratio)

    def forward(self, x: Tensor) -> Tensor:
        s = self.scores(x)
        q = causal_quantile(s, self.history, self.mask_ratio)
        kept = causal_keep(s.detach(), self.history, self.mask_ratio, q.detach()).to(x.dtype)
        margin = s - q
        m = kept + margin - margin.detach()
        events = self.windows(x.detach()).flatten(2).sum(2)  # [B, T] input per window
        self.kept_input = ((m * events).sum(1) / events.sum(1).clamp(min=1.0)).mean()
        if self.substeps > 1:
            m = m.repeat_interleave(self.substeps, dim=1)
        return x * m[:, :, None, None, None]

    def scorer_weights(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(w1 [H/r, H], w2 [H, H/r])`` float64 for ``emulator.attention.TemporalAttentionScorer``."""
        w1 = self.mlp.fc1.weight.detach().cpu().numpy().astype(np.float64)
        w2 = self.mlp.fc2.weight.detach().cpu().numpy().astype(np.float64)
        return w1, w2

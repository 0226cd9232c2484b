"""Spiking nets that fit Speck, trained in float and exported as :class:`training.spec.SpeckLayerSpec`.

Every layer is a conv (a linear layer is a conv whose kernel covers its whole input), so each maps to
one core. A layer on ``[B, T, C, H, W]``:

    conv (no bias) → BatchNorm (training only; folded on export) → [attention] → M-IF (or IF)
    → average pooling ``pool_after`` (1, 2 or 4)

Pooling comes after the neuron because on the chip it is the destination's sum pooling of spikes.
Average pooling ``k`` equals sum pooling followed by weights ×1/k², so :meth:`SpeckNet.speck_layers`
divides the next layer's weights by k²; BatchNorm (eval statistics) folds into the conv as
``w·γ/σ`` and a bias ``β − μ·γ/σ``. The output is the last layer's spike counts summed over T.

**Chip equivalence.** A chip core adds each incoming event's weights and fires one spike per update at
``v ≥ θ``, reset by subtraction, no leak. :meth:`SpeckNet.chip_forward` — the net without layer
attention or input mask, in eval mode — is exactly the time-stepped M-IF net of ``speck_layers()``:
per time bin each layer sums its input spikes, adds the bias once, fires ``floor(v/θ)`` and subtracts.
The event-driven chip approaches this when a bin's input arrives spread out; it differs where one
update leaves ``v ≥ 2θ`` (the chip fires once and waits for the next input) and in the bias, which the
chip adds per slow-clock tick (export: bias per bin = leak per tick × ticks per bin).

**Dynamic nets.** ``dynamic`` adds attention (TCA, mask mode, keep 0.5, by default) to the conv layers
and the causal input temporal mask (ratio 0.5). The chip runs only the input mask (the emulator's
``TemporalAttentionScorer`` with :meth:`SpeckNet.input_scorer_weights`); layer attention has no core
to run on, so a net meant for the chip should be built with ``layer_attention="none"`` (then
``chip_forward`` on masked input equals ``forward``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emulator.power import COEFFICIENTS
from training.attention import AttentionBlock, InputTemporalMask, Mode
from training.neurons import IF, MIF, SpikingNeuron
from training.spec import InputSpec, SpeckLayerSpec

LayerAttention = Literal["none", "TA", "CA", "TCA"]
N_CLASSES = 11
SPECK_KERNEL_MAX = 16
SPECK_STRIDES = (1, 2, 4, 8)
SPECK_PADDING_MAX = 7
SPECK_OUTPUT_MAX = 64
SPECK_POOLS = (1, 2, 4)
SPECK_CORES = 9
CHANNELS_LAST = True
"""Run convs, BatchNorm and neurons channels-last (faster on CPU); the maths is the same."""


@dataclass(frozen=True)
class LayerPlan:
    """One core: ``out_channels`` ``kernel``×``kernel`` conv, ``stride``, ``padding``, then ``pool_after``;
    ``conv`` layers may carry attention, linear ones (``conv=False``) never do."""

    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool_after: int = 1
    conv: bool = True


@dataclass(frozen=True)
class NetConfig:
    """A Speck net: its layers, input, neurons and attention (see the module docstring)."""

    layers: tuple[LayerPlan, ...]
    steps: int = InputSpec().steps
    input_shape: tuple[int, int, int] = InputSpec().shape
    neuron: Literal["mif", "if"] = "mif"
    threshold: float = 1.0
    threshold_low: float | None = None
    """Lowest membrane (the chip's ``threshold_low``; export sets it to −threshold): train with the same
    clamp as the chip runs, e.g. ``-1.0``. None = no clamp."""
    train_threshold: bool = False
    batch_norm: bool = True
    layer_attention: LayerAttention = "none"
    attention_mode: Mode = "mask"
    keep_ratio: float = 0.5
    input_mask_ratio: float | None = None
    mask_history: int = 16
    substeps: int = 1
    """Neuron steps per input step (``InputSpec.substeps``): the input is ``[B, steps·substeps, C, H, W]``;
    the input mask decides per ``substeps`` of them."""
    shapes: tuple[tuple[int, int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.layers) <= SPECK_CORES:
            raise ValueError(f"layers: 1 to {SPECK_CORES} cores, got {len(self.layers)}")
        if self.substeps < 1:
            raise ValueError(f"substeps: must be ≥ 1, got {self.substeps}")
        if self.substeps > 1 and self.layer_attention != "none":
            raise ValueError("substeps > 1: layer attention weighs whole input steps; use layer_attention='none'")
        shapes = [self.input_shape]
        for plan in self.layers:
            shapes.append(_check_layer(plan, shapes[-1]))
        object.__setattr__(self, "shapes", tuple(shapes))


def _check_layer(plan: LayerPlan, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Speck's per-core limits; returns the next layer's input shape (after pooling)."""
    where = f"layer {plan.name!r}"
    if not 1 <= plan.kernel <= SPECK_KERNEL_MAX or plan.stride not in SPECK_STRIDES:
        raise ValueError(f"{where}: kernel ≤ {SPECK_KERNEL_MAX} and stride in {SPECK_STRIDES}, got {plan}")
    if not 0 <= plan.padding <= SPECK_PADDING_MAX or plan.pool_after not in SPECK_POOLS:
        raise ValueError(f"{where}: padding ≤ {SPECK_PADDING_MAX} and pool in {SPECK_POOLS}, got {plan}")
    _, h, w = shape
    oh, ow = ((n + 2 * plan.padding - plan.kernel) // plan.stride + 1 for n in (h, w))
    if not (1 <= oh <= SPECK_OUTPUT_MAX and 1 <= ow <= SPECK_OUTPUT_MAX):
        raise ValueError(f"{where}: output {oh}×{ow} outside 1…{SPECK_OUTPUT_MAX}")
    if oh % plan.pool_after or ow % plan.pool_after:
        raise ValueError(f"{where}: output {oh}×{ow} not divisible by pool {plan.pool_after}")
    return plan.out_channels, oh // plan.pool_after, ow // plan.pool_after


class NetOutput(NamedTuple):
    """``scores`` ``[B, classes]`` (output spike counts summed over T) and ``layer_spikes`` ``[B, T, L]``
    (spike counts per layer and step, before pooling)."""

    scores: Tensor
    layer_spikes: Tensor


class SpikingLayer(nn.Module):
    """conv → BN → [attention] → neuron → avg pool, on ``[B, T, C, H, W]``."""

    def __init__(self, plan: LayerPlan, in_channels: int, config: NetConfig):
        super().__init__()
        self.plan = plan
        self.memory_format = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
        self.conv = nn.Conv2d(in_channels, plan.out_channels, plan.kernel, plan.stride, plan.padding, bias=False)
        self.bn = nn.BatchNorm2d(plan.out_channels) if config.batch_norm else None
        kind = config.layer_attention if plan.conv else "none"
        self.attention = (
            None
            if kind == "none"
            else AttentionBlock(
                config.steps, plan.out_channels, "T" in kind, "C" in kind, config.attention_mode, config.keep_ratio
            )
        )
        neuron = MIF if config.neuron == "mif" else IF
        self.neuron: SpikingNeuron = neuron(
            config.threshold, threshold_low=config.threshold_low, train_threshold=config.train_threshold
        )

    def forward(self, x: Tensor, attention: bool = True) -> tuple[Tensor, Tensor]:
        """``(pooled spikes for the next layer, spikes before pooling)``."""
        b, t = x.shape[:2]
        y = self.conv(x.flatten(0, 1).contiguous(memory_format=self.memory_format))
        if y.dtype != torch.float32:  # a conv under bf16 autocast: the neurons integrate in float32
            y = y.float()
        if self.bn is not None:
            y = self.bn(y)
        y = y.unflatten(0, (b, t))
        if attention and self.attention is not None:
            y = self.attention(y)
        spikes = self.neuron(y)
        k = self.plan.pool_after
        pooled = F.avg_pool2d(spikes.flatten(0, 1), k).unflatten(0, (b, t)) if k > 1 else spikes
        return pooled, spikes

    def folded(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """Weight and bias with BatchNorm (running statistics) folded in."""
        w = self.conv.weight.detach().double()
        if self.bn is None:
            return w.float().numpy(), None
        bn = self.bn
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"layer {self.plan.name!r}: BatchNorm without running statistics cannot fold")
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = bn.bias.detach().double() - bn.running_mean.double() * scale
        return (w * scale[:, None, None, None]).float().numpy(), bias.float().numpy()


class SpeckNet(nn.Module):
    """A chain of :class:`SpikingLayer` s built from a :class:`NetConfig`, input ``[B, T, C, H, W]``."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(
            SpikingLayer(plan, shape[0], config) for plan, shape in zip(config.layers, config.shapes, strict=False)
        )
        ratio = config.input_mask_ratio
        self.input_mask = (
            None
            if ratio is None
            else InputTemporalMask(config.mask_history, mask_ratio=ratio, substeps=config.substeps)
        )

    def spiking_layers(self) -> list[SpikingLayer]:
        """The layers, typed."""
        return [cast(SpikingLayer, layer) for layer in self.layers]

    def neurons_per_layer(self) -> list[int]:
        """``N_l``: spiking neurons of each layer (before pooling)."""
        out = []
        for plan, (_, h, w) in zip(self.config.layers, self.config.shapes, strict=False):
            oh, ow = ((n + 2 * plan.padding - plan.kernel) // plan.stride + 1 for n in (h, w))
            out.append(plan.out_channels * oh * ow)
        return out

    def spike_energy_j(self) -> list[float]:
        """Modelled active energy of one spike of each layer (J, :mod:`emulator.power`): one routed
        spike plus the next layer's synops and neuron updates it triggers. A spike reaches on average
        ``C_out·k²·(oh·ow)/(h·w)`` neurons of the next layer (``C_out·k²/s²`` for a conv, ``C_out`` for
        a linear layer); the last layer's spikes go to the readout only."""
        per_synop = sum(COEFFICIENTS.synop) + sum(COEFFICIENTS.neuron_update)
        routed = sum(COEFFICIENTS.routed_spike)
        out_neurons = self.neurons_per_layer()
        fan_out = [
            n_next * plan.kernel**2 / (h * w)
            for plan, (_, h, w), n_next in zip(
                self.config.layers[1:], self.config.shapes[1:-1], out_neurons[1:], strict=True
            )
        ]
        return [routed + f * per_synop for f in fan_out] + [routed]

    def _run(self, x: Tensor, attention: bool) -> NetOutput:
        counts = []
        for layer in self.spiking_layers():
            x, spikes = layer(x, attention)
            counts.append(spikes.sum((2, 3, 4)))  # not flatten(2): a copy of channels-last spikes
        return NetOutput(x.flatten(2).sum(1), torch.stack(counts, dim=2))

    def forward(self, x: Tensor) -> NetOutput:
        """The trained function: input mask (if any), layers with attention (if any)."""
        if self.input_mask is not None:
            with torch.autocast(x.device.type, enabled=False):  # float32 scores, as the chip's scorer
                x = self.input_mask(x.float())
        return self._run(x, attention=True)

    def chip_forward(self, x: Tensor) -> NetOutput:
        """What the chip's cores compute on ``x`` (already masked): no input mask, no layer attention."""
        return self._run(x, attention=False)

    def speck_layers(self) -> list[SpeckLayerSpec]:
        """The folded, chip-equivalent float layers, input first (module docstring)."""
        specs: list[SpeckLayerSpec] = []
        prev_pool = 1
        for layer, shape in zip(self.spiking_layers(), self.config.shapes, strict=False):
            weight, bias = layer.folded()
            plan = layer.plan
            weight = weight / np.float32(prev_pool**2)  # the previous avg pool as a sum pool
            specs.append(
                SpeckLayerSpec(
                    name=plan.name,
                    input_shape=shape,
                    weight=weight.astype(np.float32),
                    bias=bias,
                    stride=plan.stride,
                    padding=plan.padding,
                    threshold=float(layer.neuron.threshold.detach()),
                    pool_after=plan.pool_after,
                )
            )
            prev_pool = plan.pool_after
        return specs

    def input_scorer_weights(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        """``(w1, w2)`` of the input mask for ``emulator.attention.TemporalAttentionScorer``, or None."""
        return None if self.input_mask is None else self.input_mask.scorer_weights()


SPECK_LAYERS = (
    LayerPlan("conv1", 32, 3, 1, 1),
    LayerPlan("conv2", 32, 3, 2, 1),
    LayerPlan("conv3", 32, 3, 1, 1, pool_after=4),
    LayerPlan("fc1", 32, 4, conv=False),
    LayerPlan("out", N_CLASSES, 1, conv=False),
)
"""The paper's Input-32C3S1-32C3S2-32C3S1-AP4-32FC + output: 2×32×32 → 32×32×32 → 32×16×16 →
32×16×16 (pool 4 → 32×4×4) → 32×1×1 → 11×1×1, five cores."""

SMALL_LAYERS = (
    LayerPlan("conv1", 16, 3, 2, 1),
    LayerPlan("conv2", 32, 3, 2, 1, pool_after=2),
    LayerPlan("fc1", 32, 4, conv=False),
    LayerPlan("out", N_CLASSES, 1, conv=False),
)
"""The 3-layer variant 16C3S2-32C3S2-AP2-32FC + output: 2×32×32 → 16×16×16 → 32×8×8 (pool 2 → 32×4×4)
→ 32×1×1 → 11×1×1, four cores."""

Variant = Literal["vanilla", "dynamic"]


def _config(layers: tuple[LayerPlan, ...], variant: Variant, **overrides: object) -> NetConfig:
    if variant not in ("vanilla", "dynamic"):
        raise ValueError(f"variant: 'vanilla' or 'dynamic', got {variant!r}")
    base = NetConfig(layers)
    if variant == "dynamic":
        base = replace(base, layer_attention="TCA", input_mask_ratio=0.5)
    return replace(base, **overrides)  # type: ignore[arg-type]


def speck_net(variant: Variant = "vanilla", **overrides: object) -> SpeckNet:
    """The paper's 5-core Speck net; ``overrides`` replace :class:`NetConfig` fields."""
    return SpeckNet(_config(SPECK_LAYERS, variant, **overrides))


def small_speck_net(variant: Variant = "vanilla", **overrides: object) -> SpeckNet:
    """The 3-layer (4-core) variant; ``overrides`` replace :class:`NetConfig` fields."""
    return SpeckNet(_config(SMALL_LAYERS, variant, **overrides))

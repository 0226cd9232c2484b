"""Attention modules, the input mask against the emulator, and speck_layers() against the float model."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emulator.attention import TemporalAttentionScorer, _threshold
from training.attention import CA, TA, TCA, InputTemporalMask, causal_keep, causal_quantile, top_k_mask
from training.models import (
    SPECK_KERNEL_MAX,
    SPECK_OUTPUT_MAX,
    LayerPlan,
    NetConfig,
    SpeckNet,
    small_speck_net,
    speck_net,
)
from training.spec import SpeckLayerSpec


def _frames(b: int, t: int, p: float = 0.1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, 2, 32, 32, generator=g) < p).float() * torch.randint(1, 3, (1,), generator=g)


@pytest.mark.parametrize("keep_ratio", [0.25, 0.5, 0.6, 1.0])
def test_top_k_keeps_exactly_k_per_sample(keep_ratio: float) -> None:
    scores = torch.rand(6, 13)
    mask = top_k_mask(scores, keep_ratio)
    k = math.ceil(keep_ratio * 13)
    assert (mask.sum(1) == k).all()
    kept_min = torch.where(mask.bool(), scores, torch.inf).amin(1)
    dropped_max = torch.where(mask.bool(), -torch.inf, scores).amax(1)
    assert (kept_min > dropped_max).all()


def test_attention_shapes_and_masking() -> None:
    x = torch.randn(3, 8, 10, 5, 5)
    ta, ca = TA(8, 10).ta, CA(8, 10).ca
    assert ta is not None and ca is not None
    assert ta(x).shape == (3, 8) and ca(x).shape == (3, 10)
    assert ta.mlp.fc1.weight.shape == (2, 8) and ca.mlp.fc1.weight.shape == (2, 10)  # r = 4, 5
    for block in (TA(8, 10), CA(8, 10), TCA(8, 10), TCA(8, 10, mode="refine")):
        assert block(x).shape == x.shape
    out = TCA(8, 10, keep_ratio=0.5)(x)
    zero_steps = (out.flatten(2).abs().sum(2) == 0).sum(1)
    zero_channels = (out.transpose(1, 2).flatten(2).abs().sum(2) == 0).sum(1)
    assert (zero_steps == 4).all() and (zero_channels == 5).all()
    assert (TA(8, 10, mode="refine")(x) >= 0).all()  # refine ends with ReLU


def test_input_scorer_matches_the_emulator() -> None:
    torch.manual_seed(1)
    mask = InputTemporalMask(history=12)
    with torch.no_grad():
        for p in mask.parameters():
            p.normal_()
    w1, w2 = mask.scorer_weights()
    scorer = TemporalAttentionScorer(w1, w2)
    histories = np.random.default_rng(0).random((20, 12, 2)) * [1, 5]
    ours = mask.score_history(torch.from_numpy(histories).float()).detach().double().numpy()
    theirs = np.array([scorer.score(h) for h in histories])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # scores() on frames: step t sees exactly the features of frames t−H … t−1
    x = _frames(2, 15)
    feats = torch.stack([x.flatten(2).mean(2), x.flatten(2).amax(2)], 2).double().numpy()
    padded = np.concatenate([np.zeros((2, 12, 2)), feats], 1)
    expected = [[scorer.score(padded[b, t : t + 12]) for t in range(15)] for b in range(2)]
    np.testing.assert_allclose(mask.scores(x).detach().double().numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.3, 1.0])
def test_causal_keep_is_the_emulators_threshold_rule(ratio: float) -> None:
    scores = torch.rand(4, 30, dtype=torch.float64)
    scores[0] = 0.5  # a constant stream: ties everywhere
    ours = causal_keep(scores, 8, ratio)
    for b in range(4):
        kept = np.zeros(30, np.bool_)
        _threshold(scores[b].numpy().copy(), kept, 0, 8, ratio)
        assert ours[b].tolist() == kept.tolist()


def _reference(specs: list[SpeckLayerSpec], x: torch.Tensor) -> list[torch.Tensor]:
    """The chip layers as a plain time-stepped M-IF net: per bin, sum the input spikes through the conv,
    add the bias, fire floor(v/θ), subtract; sum-pool the spikes on the way out."""
    b, steps = x.shape[:2]
    counts = []
    for spec in specs:
        w = torch.from_numpy(spec.weight)
        bias = None if spec.bias is None else torch.from_numpy(spec.bias)
        drive = F.conv2d(x.flatten(0, 1), w, bias, spec.stride, spec.padding).unflatten(0, (b, steps))
        v = torch.zeros_like(drive[:, 0])
        out = []
        for t in range(steps):
            v = v + drive[:, t]
            s = torch.clamp(torch.floor(v / spec.threshold), min=0)
            v = v - s * spec.threshold
            out.append(s)
        spikes = torch.stack(out, 1)
        counts.append(spikes)
        k = spec.pool_after
        x = F.avg_pool2d(spikes.flatten(0, 1), k, divisor_override=1).unflatten(0, (b, steps)) if k > 1 else spikes
    return counts


def _randomise_batch_norm(model: SpeckNet) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in model.layers:
            bn = layer.bn
            assert bn is not None
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
            bn.bias.copy_(0.3 * torch.randn(bn.bias.shape, generator=g))
    model.train()
    with torch.no_grad():
        model.chip_forward(_frames(8, 6, seed=5) * 2)  # running statistics away from (0, 1)
    model.eval()


@pytest.mark.parametrize("make", [speck_net, small_speck_net, lambda: speck_net("dynamic")])
def test_speck_layers_run_as_if_net_equal_the_model(make) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = make()
    _randomise_batch_norm(model)
    specs = model.speck_layers()
    x = _frames(3, 20, p=0.2, seed=7)
    with torch.no_grad():
        out = model.chip_forward(x)
    ref = _reference(specs, x)
    per_layer = torch.stack([r.flatten(2).sum(2) for r in ref], 2)
    assert per_layer.sum() > 100  # the comparison is not between two silent nets
    # equal up to float rounding at exact multiples of θ: allow 0.1 % of the spikes to differ
    diff = (per_layer - out.layer_spikes).abs().sum()
    assert diff <= 1e-3 * per_layer.sum()
    torch.testing.assert_close(ref[-1].flatten(2).sum(1), out.scores, atol=1.0, rtol=0.01)


@pytest.mark.parametrize("make", [speck_net, small_speck_net])
def test_speck_layers_fit_the_chip(make) -> None:  # type: ignore[no-untyped-def]
    specs = make().speck_layers()
    assert specs[0].input_shape == (2, 32, 32) and specs[-1].output_shape() == (11, 1, 1)
    for spec, nxt in itertools.pairwise(specs):
        f, h, w = spec.output_shape()
        assert nxt.input_shape == (f, h // spec.pool_after, w // spec.pool_after)
    for spec in specs:
        _, h, w = spec.output_shape()
        assert spec.kernel <= SPECK_KERNEL_MAX and spec.stride in (1, 2, 4, 8) and spec.padding <= 7
        assert h <= SPECK_OUTPUT_MAX and w <= SPECK_OUTPUT_MAX and spec.pool_after in (1, 2, 4)
        assert spec.threshold > 0 and spec.weight.dtype == np.float32
    assert len(specs) == (5 if make is speck_net else 4)


@pytest.mark.parametrize("variant", ["vanilla", "dynamic"])
def test_surrogate_gradients_reach_the_first_layer(variant) -> None:  # type: ignore[no-untyped-def]
    model = speck_net(variant, steps=6)
    out = model(_frames(4, 6, p=0.3))
    assert out.scores.shape == (4, 11) and out.layer_spikes.shape == (4, 6, 5)
    out.scores.sum().backward()
    grad = model.layers[0].conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    if variant == "dynamic":
        assert model.input_mask is not None
        mask_grad = model.input_mask.mlp.fc1.weight.grad
        assert mask_grad is not None and mask_grad.abs().sum() > 0


def test_input_scorer_weights() -> None:
    assert speck_net().input_scorer_weights() is None
    weights = speck_net("dynamic", mask_history=16).input_scorer_weights()
    assert weights is not None
    w1, w2 = weights
    assert w1.shape == (4, 16) and w2.shape == (16, 4) and w1.dtype == np.float64
    TemporalAttentionScorer(w1, w2)  # accepted as is


def test_dynamic_model_masks_half_the_input_frames() -> None:
    model = speck_net("dynamic", steps=10)
    assert model.input_mask is not None
    kept = model.input_mask.keep(_frames(5, 10))
    assert kept[:, 0].all()
    assert 0.3 <= kept.float().mean() <= 0.7


def test_layer_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        NetConfig((LayerPlan("bad", 8, 3, stride=3),))
    with pytest.raises(ValueError, match="output"):
        NetConfig((LayerPlan("big", 8, 3, padding=7),), input_shape=(2, 64, 64))  # 76×76 > 64×64


def test_causal_quantile_is_the_threshold_causal_keep_compares_with() -> None:
    g = torch.Generator().manual_seed(5)
    scores = torch.rand(8, 20, generator=g, dtype=torch.float64)
    q = causal_quantile(scores, 6, 0.5)
    kept = causal_keep(scores, 6, 0.5)
    assert torch.equal(kept[:, 1:], scores[:, 1:] > q[:, 1:])  # random scores: no ties
    assert torch.equal(q[:, 0], scores[:, 0]) and bool(kept[:, 0].all())  # the first step: kept, no threshold


def test_on_substeps_the_input_mask_decides_per_window() -> None:
    torch.manual_seed(3)
    coarse = InputTemporalMask(history=4)
    fine = InputTemporalMask(history=4, substeps=3)
    fine.load_state_dict(coarse.state_dict())
    x = (torch.rand(2, 30, 2, 8, 8) < 0.05 * torch.rand(2, 30, 1, 1, 1) * 4).float()  # 10 windows of 3
    windows = x.unflatten(1, (10, 3)).sum(2)
    assert torch.equal(fine.keep(x), coarse.keep(windows))
    with torch.no_grad():
        masked = fine(x)
    kept = coarse.keep(windows).repeat_interleave(3, dim=1)
    assert torch.equal(masked, x * kept[:, :, None, None, None])
    assert 0 < kept.float().mean() < 1
    with torch.no_grad():
        coarse(windows)
    assert float(fine.kept_input) == pytest.approx(float(coarse.kept_input))
    with pytest.raises(ValueError, match="multiple of substeps"):
        fine(x[:, :29])


def test_substeps_need_a_net_without_layer_attention() -> None:
    assert speck_net("dynamic", layer_attention="none", substeps=3).input_mask.substeps == 3  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="substeps"):
        speck_net("dynamic", layer_attention="TCA", substeps=3)
    with pytest.raises(ValueError, match="substeps"):
        speck_net("vanilla", substeps=0)

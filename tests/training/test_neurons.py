"""Neurons: exact spike sequences, the fused loop against plain autograd, surrogate gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.neurons import IF, LIF, MIF, PeriodicExponential, SingleExponential, SpikingNeuron, _exp


def _run(neuron: SpikingNeuron, inputs: list[float]) -> list[float]:
    x = torch.tensor(inputs, dtype=torch.float32).view(1, -1, 1)
    return neuron(x).view(-1).tolist()


def test_mif_emits_floor_v_over_threshold_and_subtracts() -> None:
    # v: 2.5 → 2 spikes, 0.5 left; 3.0 → 3, 0; −1 → 0 (v = −1); 0.5 → 0 (v = −0.5); 4.5 → 4 (v = 0)
    assert _run(MIF(1.0), [2.5, 2.5, -1.0, 0.5, 4.5]) == [2, 3, 0, 0, 4]
    assert _run(MIF(0.5), [1.25, 0.25]) == [2, 1]  # 1.25 → 2 (0.25 left); 0.5 reaches θ exactly → 1


def test_mif_threshold_low_clamps_the_membrane() -> None:
    assert _run(MIF(1.0), [-5.0, 6.0]) == [0, 1]
    assert _run(MIF(1.0, threshold_low=-1.0), [-5.0, 6.0]) == [0, 5]


def test_if_fires_once_per_step_and_keeps_the_remainder() -> None:
    assert _run(IF(1.0), [2.5, 0.0, 0.0, 0.0]) == [1, 1, 0, 0]
    assert _run(IF(1.0, reset="zero"), [2.5, 0.0, 1.0]) == [1, 0, 1]


def test_lif_leaks() -> None:
    # v = 0.2 → 0.06 + 0.2 = 0.26 → 0.078 + 0.2 = 0.278: never reaches 0.3
    assert _run(LIF(), [0.2, 0.2, 0.2]) == [0, 0, 0]
    assert _run(LIF(), [0.3, 0.2]) == [1, 0]


@pytest.mark.parametrize(
    "make",
    [
        lambda train: MIF(0.7, train_threshold=train),
        lambda train: MIF(0.7, threshold_low=-0.5, train_threshold=train),
        lambda train: MIF(1.0, surrogate=SingleExponential, reset="zero", train_threshold=train),
        lambda train: IF(1.0, train_threshold=train),
        lambda train: LIF(train_threshold=train),
    ],
)
def test_fused_loop_matches_autograd_steps(make) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    x = torch.randn(3, 9, 4, 5, requires_grad=True)
    weights = torch.randn(3, 9, 4, 5)
    fused, plain = make(False), make(True)  # a trainable θ takes the plain autograd path
    s1, s2 = fused(x), plain(x)
    (g1,) = torch.autograd.grad((s1 * weights).sum(), x)
    (g2,) = torch.autograd.grad((s2 * weights).sum(), x)
    assert torch.equal(s1, s2)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-5)
    assert g1.abs().sum() > 0


def test_periodic_surrogate_peaks_at_every_multiple_of_threshold() -> None:
    u = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 3.5])
    d = PeriodicExponential.derivative(u, 0.5)
    torch.testing.assert_close(d[[1, 3, 4]], torch.ones(3))
    assert (d[[0, 2, 5]] < 0.5).all()


def test_trainable_threshold_gets_a_gradient() -> None:
    neuron = MIF(1.0, train_threshold=True)
    neuron(torch.rand(2, 5, 7) * 3).sum().backward()
    assert neuron.threshold.grad is not None and neuron.threshold.grad != 0


def test_channels_last_input_gives_the_same_spikes_and_gradients() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, 5, 6) * 2
    x_cl = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3).requires_grad_()
    x = x.clone().requires_grad_()
    weights = torch.randn(2, 4, 3, 5, 6)
    s, s_cl = MIF(0.8)(x), MIF(0.8)(x_cl)
    (s * weights).sum().backward()
    (s_cl * weights).sum().backward()
    assert torch.equal(s, s_cl)
    assert x.grad is not None and x_cl.grad is not None
    torch.testing.assert_close(x.grad, x_cl.grad)


def test_the_kernels_exp_is_float32_accurate_down_to_underflow() -> None:
    x = -np.concatenate([np.linspace(0, 20, 2001), np.linspace(20, 87, 2001), [103.0, 500.0]]).astype(np.float32)
    got = np.array([_exp(v) for v in x], np.float64)
    want = np.exp(x.astype(np.float64))
    normal = x > -87
    assert np.max(np.abs(got[normal] - want[normal]) / want[normal]) < 4e-6
    assert np.max(np.abs(got[x >= -20] - want[x >= -20]) / want[x >= -20]) < 2e-6
    assert (got[~normal] < 1e-37).all() and (got >= 0).all()
    assert _exp(np.float32(0.5)) == 1.0 and _exp(np.float32(200.0)) == 1.0  # outside its domain: bounded


def test_a_surrogate_needs_a_positive_width() -> None:
    with pytest.raises(ValueError, match="width"):
        MIF(1.0, width=0.0)

"""Training: a falling loss on separable data, metrics, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.models import small_speck_net, speck_net
from training.train import Penalty, evaluate_float, train

STEPS = 6


def _two_classes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: events in the left half of the frame; class 1: in the right half."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    frames = (torch.rand(n, STEPS, 2, 32, 32, generator=g) < 0.15).float()
    left = torch.zeros(32)
    left[:16] = 1
    side = torch.where(labels[:, None] == 0, left, 1 - left)  # [n, 32] over x
    return frames * side[:, None, None, None, :], labels


def _model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return small_speck_net(steps=STEPS)


def test_loss_falls_on_separable_data(tmp_path: Path) -> None:
    data = _two_classes(64, 0)
    result = train(
        _model(), data, _two_classes(16, 1), epochs=4, lr=3e-3, batch_size=16, seed=0,
        checkpoint_dir=tmp_path, progress=False,
    )  # fmt: skip
    losses = [e.train_loss for e in result.history]
    assert losses[-1] < 0.8 * losses[0], losses


def test_dynamic_model_trains(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = small_speck_net("dynamic", steps=STEPS, mask_history=4)
    result = train(
        model, _two_classes(32, 0), _two_classes(8, 1), epochs=2, lr=3e-3, batch_size=16, seed=0,
        checkpoint_dir=tmp_path, progress=False, loss="ce",
    )  # fmt: skip
    assert result.epochs_completed == 2 and all(e.train_loss == e.train_loss for e in result.history)


def test_evaluate_float_metrics() -> None:
    model = _model()
    data = _two_classes(10, 2)
    result = evaluate_float(model, data, batch_size=4)
    assert 0.0 <= result.accuracy <= 1.0
    assert result.nasfr == pytest.approx(result.spikes_per_sample / (STEPS * sum(model.neurons_per_layer())))
    assert sum(model.neurons_per_layer()) == 16 * 16 * 16 + 32 * 8 * 8 + 32 + 11


def test_resume_continues_at_the_next_epoch_and_matches_one_run(tmp_path: Path) -> None:
    train_set, val_set = _two_classes(32, 0), _two_classes(8, 1)
    kwargs = {"lr": 3e-3, "batch_size": 16, "seed": 4, "progress": False}
    whole = _model()
    train(whole, train_set, val_set, epochs=2, checkpoint_dir=tmp_path / "a", **kwargs)  # type: ignore[arg-type]
    first = _model()
    train(first, train_set, val_set, epochs=1, checkpoint_dir=tmp_path / "b", **kwargs)  # type: ignore[arg-type]
    resumed = _model()
    result = train(
        resumed,
        train_set,
        val_set,
        epochs=2,
        checkpoint_dir=tmp_path / "b",
        resume=True,
        **kwargs,  # type: ignore[arg-type]
    )
    assert [e.epoch for e in result.history] == [1, 2] and result.epochs_completed == 2
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch_*.pt")) == ["epoch_0001.pt", "epoch_0002.pt"]
    state = torch.load(tmp_path / "b" / "epoch_0002.pt", weights_only=False)
    assert state["epoch"] == 2 and "optimizer" in state and state["config"]["model"]["steps"] == STEPS
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    again = train(resumed, train_set, val_set, epochs=2, checkpoint_dir=tmp_path / "b", resume=True, **kwargs)  # type: ignore[arg-type]
    assert len(again.history) == 2  # nothing left to do


def test_time_budget_stops_between_epochs(tmp_path: Path) -> None:
    result = train(
        _model(), _two_classes(8, 0), _two_classes(4, 1), epochs=3, batch_size=8, checkpoint_dir=tmp_path,
        progress=False, time_budget_s=0.0,
    )  # fmt: skip
    assert result.stopped_by_budget and result.epochs_completed <= 1


@pytest.mark.parametrize("bf16", [False, True])
def test_bf16_convs_train_and_keep_float32_weights(tmp_path: Path, bf16: bool) -> None:
    data = _two_classes(64, 0)
    model = _model()
    result = train(
        model, data, _two_classes(16, 1), epochs=4, lr=3e-3, batch_size=16, seed=0,
        checkpoint_dir=tmp_path, progress=False, bf16=bf16,
    )  # fmt: skip
    losses = [e.train_loss for e in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(p.dtype == torch.float32 for p in model.parameters())  # what export reads


def test_under_bf16_autocast_the_input_mask_decides_in_float32() -> None:
    """The chip's scorer runs in float: the mask must keep the same frames with and without autocast."""
    torch.manual_seed(0)
    model = small_speck_net("dynamic", steps=STEPS, mask_history=4, layer_attention="none")
    x = _two_classes(4, 3)[0] * torch.rand(4, STEPS, 1, 1, 1)  # frames of different strength
    masked: list[torch.Tensor] = []
    model.input_mask.register_forward_hook(lambda _m, _i, out: masked.append(out))
    with torch.no_grad():
        plain = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(x)
    assert masked[1].dtype == torch.float32 and torch.equal(masked[0], masked[1])
    assert auto.scores.dtype == torch.float32 and auto.layer_spikes.dtype == torch.float32
    assert plain.scores.shape == auto.scores.shape


@pytest.mark.parametrize("kind", ["spikes", "energy"])
def test_spike_penalty_cuts_what_it_weighs(tmp_path: Path, kind: Penalty) -> None:
    """``spikes``: the spike count falls; ``energy``: the spikes' modelled energy (each layer's spikes
    weighted by :meth:`SpeckNet.spike_energy_j`) falls."""
    data, val = _two_classes(64, 0), _two_classes(16, 1)
    costs = []
    for penalty in (0.0, 2.0):
        model = _model()
        train(model, data, val, epochs=3, lr=3e-3, batch_size=16, seed=0, checkpoint_dir=tmp_path / str(penalty),
              progress=False, spike_penalty=penalty, penalty=kind)  # fmt: skip
        model.eval()
        with torch.no_grad():
            per_layer = model(val[0]).layer_spikes.sum((0, 1))
        weights = torch.tensor(model.spike_energy_j()) if kind == "energy" else torch.ones(len(per_layer))
        costs.append(float((per_layer * weights).sum()))
    assert costs[1] < 0.8 * costs[0], costs


def _kept_input(model, frames: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
    kept = model.input_mask.keep(frames).float()  # [B, T]
    events = frames.flatten(2).sum(2)
    return float((kept * events).sum() / events.sum())


def test_keep_target_steers_how_much_input_the_mask_keeps(tmp_path: Path) -> None:
    """The mask always keeps half the steps; ``keep_target`` decides which half, so how much input."""
    steps = 12
    g = torch.Generator().manual_seed(3)
    busy = torch.tensor([0.3 if (t // 2) % 2 == 0 else 0.02 for t in range(steps)])  # busy, busy, quiet, quiet…
    frames = (torch.rand(48, steps, 2, 32, 32, generator=g) < busy[None, :, None, None, None]).float()
    labels = torch.arange(48) % 2
    kept = {}
    for target in (None, 0.1):
        torch.manual_seed(0)
        model = small_speck_net("dynamic", steps=steps, mask_history=4)
        train(model, (frames, labels), (frames[:8], labels[:8]), epochs=8, lr=1e-2, batch_size=16, seed=0,
              checkpoint_dir=tmp_path / str(target), progress=False, keep_target=target, threads=1)  # fmt: skip
        kept[target] = _kept_input(model, frames)
    assert kept[0.1] < kept[None] - 0.15, kept


def test_spike_energy_is_a_routed_spike_plus_the_synops_it_triggers() -> None:
    from emulator.power import COEFFICIENTS

    per_synop = sum(COEFFICIENTS.synop) + sum(COEFFICIENTS.neuron_update)
    routed = sum(COEFFICIENTS.routed_spike)
    # conv1 → conv2 (32 ch, 3×3, stride 2): 72; conv2 → conv3 (stride 1): 288; conv3 → AP4 → fc1: 32;
    # fc1 → out: 11; out → readout: none
    fan_out = [32 * 9 / 4, 32 * 9, 32, 11, 0]
    energy = speck_net().spike_energy_j()
    assert energy == pytest.approx([routed + f * per_synop for f in fan_out])


def test_the_energy_penalty_weighs_each_layer_by_its_spike_energy() -> None:
    from training.train import _penalty_weights

    model = speck_net()
    energy, spikes = _penalty_weights(model, "energy"), _penalty_weights(model, "spikes")
    assert energy["spike_weights"] == model.spike_energy_j() and spikes["spike_weights"] == [1.0] * 5
    assert spikes["neurons"] == sum(model.neurons_per_layer())  # NASFR's denominator
    assert energy["neurons"] == pytest.approx(
        sum(n * w for n, w in zip(model.neurons_per_layer(), model.spike_energy_j()))
    )


def test_penalty_must_be_known(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="penalty"):
        train(
            _model(),
            _two_classes(8, 0),
            _two_classes(8, 1),
            epochs=1,
            checkpoint_dir=tmp_path,
            progress=False,
            penalty="watts",
        )  # type: ignore[arg-type]


def test_a_substep_net_counts_its_rates_and_loss_per_input_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.train as tt

    seen: list[int] = []
    loss_fn = tt.loss_fn

    def spy(scores: torch.Tensor, labels: torch.Tensor, steps: int, kind: tt.Loss) -> torch.Tensor:
        seen.append(steps)
        return loss_fn(scores, labels, steps, kind)

    monkeypatch.setattr(tt, "loss_fn", spy)
    torch.manual_seed(0)
    model = small_speck_net("dynamic", steps=STEPS, mask_history=4, layer_attention="none", substeps=3)
    frames, labels = _two_classes(12, 3)
    fine = frames.repeat_interleave(3, dim=1)  # [12, 3·STEPS, ...]
    result = evaluate_float(model, (fine, labels), batch_size=4)
    assert result.spikes_per_sample > 0
    assert result.nasfr == pytest.approx(result.spikes_per_sample / (STEPS * sum(model.neurons_per_layer())))
    trained = train(model, (fine, labels), (fine, labels), epochs=2, lr=3e-3, batch_size=4, seed=0,
                    checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    assert trained.epochs_completed == 2 and trained.history[-1].val.nasfr > 0
    assert seen and set(seen) == {STEPS}  # the loss's rate is per input step, not per substep
    with pytest.raises(ValueError, match="not a multiple of"):
        evaluate_float(model, (fine[:, :-1], labels))

"""Training and float evaluation of :class:`training.models.SpeckNet` on frame tensors.

A data set is ``(frames, labels)``: frames ``[N, T, C, H, W]`` float counts, labels ``[N]`` int64 (a
``torch.utils.data.TensorDataset`` of the two works too). Training: Adam, loss ``mse`` (output rate =
spike counts / T against one-hot, as the papers) or ``ce`` (cross-entropy on the counts); deterministic
from ``seed`` (torch, numpy, random; epoch ``e`` shuffles with ``seed + e``, so a resumed run sees the
same batches). After every epoch ``checkpoint_dir/epoch_NNNN.pt`` holds model, optimizer, epoch, best
val accuracy, config and history; ``resume=True`` continues after the newest one. ``best.pt`` holds
the weights of the best validation epoch.

``spike_penalty`` λ adds ``λ·NASFR`` of each batch to the loss (spikes are what the chip pays for);
with ``penalty="energy"`` each layer's spikes weigh what one costs on the chip (a routed spike plus the
synops it triggers in the next layer, :meth:`SpeckNet.spike_energy_j`): ``λ·Σ c_l·w_l / (S·T·Σ N_l·w_l)``,
the energy-weighted firing rate, so the penalty thins the layers whose spikes fan out the most.
``keep_target`` f adds ``(kept − f)²``, ``kept`` the fraction of input events the dynamic net's input
mask passes: the mask always passes half the *windows*, but which half decides how much input, spikes
and accuracy survive — left to the classification loss alone the scorer settled anywhere from 26 % to
80 % of the events between runs.

Precision: ``bf16=True`` runs the training forward under ``torch.autocast("cpu", bfloat16)``, so the
convs (and their backward) run in bf16 through oneDNN (AMX / AVX-512 BF16); each conv's output is cast
back to float32 before its neuron, the neurons' numba loop and the input mask's scores stay float32,
and the weights, optimizer and validation stay float32 (what export reads). ``bf16=None`` (default)
turns it on where the CPU has native bf16 (:func:`bf16_helps`).

Metrics (attention-snn.md): ``c(l, t, s)`` spikes of layer ``l`` at step ``t`` for sample ``s``, ``N_l``
its neurons; NASFR ``= Σ c / (S · T · Σ_l N_l)``.

Substeps: a net built with ``substeps`` k takes frames ``[N, T·k, ...]`` (``InputSpec.substeps``); the
loss, the penalty's rate and NASFR still count the ``T`` input steps, so a net moved between step sizes
keeps its targets (a rate of 1 = one output spike per 30 ms) and its metrics stay comparable.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset
from tqdm import tqdm

from training.malloc import retain_freed_memory
from training.models import SpeckNet

Loss = Literal["mse", "ce"]
Penalty = Literal["spikes", "energy"]
FrameSet = tuple[Tensor, Tensor] | TensorDataset
CHECKPOINT_PREFIX = "epoch_"


class EvalResult(NamedTuple):
    """Float-model metrics over a data set."""

    accuracy: float
    spikes_per_sample: float
    nasfr: float


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss and accuracy, validation metrics, wall seconds."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val: EvalResult
    seconds: float


@dataclass
class TrainResult:
    """What :func:`train` did: per-epoch stats (including resumed ones), the best validation accuracy,
    the epochs completed and whether the time budget cut the run short."""

    history: list[EpochStats] = field(default_factory=list)
    best_val_accuracy: float = 0.0
    epochs_completed: int = 0
    stopped_by_budget: bool = False


def _tensors(data: FrameSet) -> tuple[Tensor, Tensor]:
    frames, labels = data.tensors if isinstance(data, TensorDataset) else data
    if frames.ndim != 5 or len(frames) != len(labels):
        raise ValueError(f"data: frames [N, T, C, H, W] and labels [N], got {tuple(frames.shape)}, {len(labels)}")
    return frames.float(), labels.long()


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def loss_fn(scores: Tensor, labels: Tensor, steps: int, kind: Loss) -> Tensor:
    """``mse`` on the output rate (counts / T) against one-hot, or ``ce`` on the counts."""
    if kind == "ce":
        return F.cross_entropy(scores, labels)
    return F.mse_loss(scores / steps, F.one_hot(labels, scores.shape[1]).to(scores.dtype))


@torch.no_grad()
def evaluate_float(model: SpeckNet, dataset: FrameSet, batch_size: int = 64) -> EvalResult:
    """Accuracy, mean spikes per sample (all layers) and NASFR of the float model (eval mode)."""
    frames, labels = _tensors(dataset)
    was_training = model.training
    model.eval()
    correct, spikes = 0, 0.0
    for i in range(0, len(frames), batch_size):
        out = model(frames[i : i + batch_size])
        correct += int((out.scores.argmax(1) == labels[i : i + batch_size]).sum())
        spikes += float(out.layer_spikes.sum())
    model.train(was_training)
    n, steps = len(frames), input_steps(model, frames)
    return EvalResult(correct / n, spikes / n, spikes / (n * steps * sum(model.neurons_per_layer())))


def input_steps(model: SpeckNet, frames: Tensor) -> int:
    """``T``: the input steps of ``frames`` ``[N, T·substeps, ...]``, which the loss and the rates count."""
    k = model.config.substeps
    if frames.shape[1] % k:
        raise ValueError(f"frames: {frames.shape[1]} steps is not a multiple of the net's substeps={k}")
    return frames.shape[1] // k


def bf16_helps() -> bool:
    """Whether this CPU runs bf16 convs natively (AVX-512 BF16 or AMX): then training's convs run
    under bf16 autocast (the neurons, the input mask and evaluation stay float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def _latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob(f"{CHECKPOINT_PREFIX}*.pt"))
    return found[-1] if found else None


def shifted(frames: Tensor, max_shift: int, gen: torch.Generator) -> Tensor:
    """Augmentation: each sample's frames ``[B, T, C, H, W]`` moved by a random whole-pixel offset in
    ``[−max_shift, max_shift]`` along x and y, zero-filled (people stand in different places)."""
    out = torch.zeros_like(frames)
    h, w = frames.shape[-2:]
    offsets = torch.randint(-max_shift, max_shift + 1, (len(frames), 2), generator=gen).tolist()
    for b, (dy, dx) in enumerate(offsets):
        out[b, ..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = frames[
            b, ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


def _penalty_weights(model: SpeckNet, penalty: Penalty) -> dict[str, Any]:
    """The spike penalty's per-layer weights ``w_l`` and normaliser ``Σ_l N_l·w_l`` (module docstring)."""
    w = [1.0] * len(model.neurons_per_layer()) if penalty == "spikes" else model.spike_energy_j()
    return {"spike_weights": w, "neurons": sum(n * x for n, x in zip(model.neurons_per_layer(), w, strict=True))}


def _run_epoch(
    model: SpeckNet,
    optimizer: torch.optim.Optimizer,
    data: tuple[Tensor, Tensor],
    order: Tensor,
    config: dict[str, Any],
) -> tuple[float, float]:
    """One pass in ``order``; returns (mean loss, accuracy)."""
    frames, labels = data
    steps = input_steps(model, frames)
    model.train()
    total_loss, correct = 0.0, 0
    batches = range(0, len(order), config["batch_size"])
    bar = tqdm(batches, desc=f"epoch {config['epoch'] + 1}", file=sys.stderr, disable=not config["progress"])
    shift = config.get("shift", 0)
    gen = torch.Generator().manual_seed(config["seed"] * 100_003 + config["epoch"])
    for i in bar:
        idx = order[i : i + config["batch_size"]]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(config.get("bf16"))):
            out = model(shifted(frames[idx], shift, gen) if shift else frames[idx])
        loss = loss_fn(out.scores.float(), labels[idx], steps, config["loss"])
        if config.get("keep_target") is not None and model.input_mask is not None:  # pin the kept input
            loss = loss + (model.input_mask.kept_input - config["keep_target"]) ** 2
        if config.get("spike_penalty"):  # λ × the batch's (energy-weighted) firing rate: less power on the chip
            weights = torch.tensor(config["spike_weights"])  # per layer: 1 (NASFR) or a spike's energy
            rate = (out.layer_spikes * weights).sum() / (len(idx) * steps * config["neurons"])
            loss = loss + config["spike_penalty"] * rate
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(idx)
        correct += int((out.scores.argmax(1) == labels[idx]).sum())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return total_loss / len(order), correct / len(order)


def train(
    model: SpeckNet,
    train_set: FrameSet,
    val_set: FrameSet,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    checkpoint_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    loss: Loss = "mse",
    time_budget_s: float | None = None,
    threads: int | None = None,
    shift: int = 0,
    cosine: bool = False,
    bf16: bool | None = None,
    spike_penalty: float = 0.0,
    keep_target: float | None = None,
    penalty: Penalty = "spikes",
) -> TrainResult:
    """Train ``model`` in place for up to ``epochs`` epochs (module docstring); stops early, between
    epochs, when another epoch would not fit ``time_budget_s``."""
    if loss not in ("mse", "ce"):
        raise ValueError(f"loss: 'mse' or 'ce', got {loss!r}")
    if penalty not in ("spikes", "energy"):
        raise ValueError(f"penalty: 'spikes' or 'energy', got {penalty!r}")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    retain_freed_memory()  # every batch re-faulted its big tensors in (training/malloc.py)
    seed_everything(seed)
    data, val = _tensors(train_set), _tensors(val_set)
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    config: dict[str, Any] = {
        "lr": lr, "batch_size": batch_size, "seed": seed, "loss": loss, "progress": progress, "shift": shift,
        "cosine": cosine, "bf16": bf16_helps() if bf16 is None else bf16, "spike_penalty": spike_penalty,
        "keep_target": keep_target, "penalty": penalty, **_penalty_weights(model, penalty),
    }  # fmt: skip
    result = TrainResult()
    latest = _latest_checkpoint(directory) if resume else None
    if latest is not None:
        state = torch.load(latest, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        result = TrainResult(state["history"], state["best_val_accuracy"], state["epoch"])
    start, last_epoch_s = time.monotonic(), 0.0
    for epoch in range(result.epochs_completed, epochs):
        elapsed = time.monotonic() - start
        if time_budget_s is not None and elapsed + last_epoch_s > time_budget_s:
            result.stopped_by_budget = True
            break
        t0 = time.monotonic()
        if cosine:  # from lr down to lr/20 over the run, set per epoch so a resumed run gets the same
            for group in optimizer.param_groups:
                group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs - 1, 1))))
        order = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(seed + epoch))
        train_loss, train_acc = _run_epoch(model, optimizer, data, order, {**config, "epoch": epoch})
        stats = EpochStats(epoch + 1, train_loss, train_acc, evaluate_float(model, val), time.monotonic() - t0)
        last_epoch_s = stats.seconds
        result.history.append(stats)
        result.epochs_completed = epoch + 1
        if stats.val.accuracy >= result.best_val_accuracy:
            result.best_val_accuracy = stats.val.accuracy
            torch.save(model.state_dict(), directory / "best.pt")
        _save(directory, model, optimizer, result, {**config, "model": asdict(model.config)})
    return result


def _save(
    directory: Path, model: SpeckNet, optimizer: torch.optim.Optimizer, result: TrainResult, config: dict
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": result.epochs_completed,
        "best_val_accuracy": result.best_val_accuracy,
        "history": result.history,
        "config": config,
    }
    path = directory / f"{CHECKPOINT_PREFIX}{result.epochs_completed:04d}.pt"
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)

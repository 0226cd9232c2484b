"""The DVS pre-processing core: polarity → pooling → ROI → mirror x/y → diagonal swap.

Stateless and vectorised (numpy); the noise filter, which keeps state, sits before it on
sensor coordinates (:mod:`emulator.noise`, :data:`emulator.noise.FILTER_POSITION`).

Per event ``(t, x, y, p)`` on a ``width × height`` sensor (speck-hardware.md §3):

1. polarity: ``"on"`` keeps ``p = 1``, ``"off"`` keeps ``p = 0`` (others dropped, counted);
   ``"merge"`` keeps all with ``p = 0``; ``"both"`` keeps all. The output ``p`` is the channel.
2. pooling: ``x //= pooling_x``, ``y //= pooling_y`` (coordinates only; no event is summed or dropped).
   Pooled extent ``ceil(width / pooling_x) × ceil(height / pooling_y)``.
3. ROI ``(y0, x0, y1, x1)`` inclusive, pooled coordinates: events outside are dropped (counted),
   the rest shifted to start at 0. Extent ``(y1 − y0 + 1) × (x1 − x0 + 1)``; ``None`` = the pooled extent.
4. mirror: ``x = W − 1 − x`` (``mirror_x``), ``y = H − 1 − y`` (``mirror_y``) over the ROI extent.
5. swap: ``x, y = y, x`` after the mirrors (as sinabs does).

Time order and :data:`proto.events.EVENT_DTYPE` are kept; a new array is always returned.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.config import DvsConfig
from proto.events import Events, empty_events_uninitialised, event_words

CHANNEL_IS_POLARITY = True
"""On the chip the feature index of a DVS event is its polarity bit unless ``merge`` is set;
``on``/``off`` only gate events (samna's ``on_channel``/``off_channel``), so they keep ``p`` and
:func:`output_shape` still has 2 channels for them (one stays empty). Only ``merge`` gives 1 channel."""


class DvsCounts(NamedTuple):
    """Events dropped by :func:`preprocess`, by reason."""

    polarity: int
    roi: int


def pooled_shape(cfg: DvsConfig) -> tuple[int, int]:
    """``(height, width)`` after pooling (ceil division, so every sensor pixel maps somewhere)."""
    return -(-cfg.height // cfg.pooling_y), -(-cfg.width // cfg.pooling_x)


def roi_bounds(cfg: DvsConfig) -> tuple[int, int, int, int]:
    """The ROI ``(y0, x0, y1, x1)`` inclusive in pooled coordinates (the whole pooled extent if ``None``)."""
    if cfg.roi is not None:
        return cfg.roi
    h, w = pooled_shape(cfg)
    return 0, 0, h - 1, w - 1


def output_shape(cfg: DvsConfig) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the pre-processing output (after ROI and swap)."""
    y0, x0, y1, x1 = roi_bounds(cfg)
    h, w = y1 - y0 + 1, x1 - x0 + 1
    channels = 1 if cfg.polarity == "merge" else 2
    return (channels, w, h) if cfg.swap_xy else (channels, h, w)


def _select_polarity(p: npt.NDArray[Any], polarity: str) -> npt.NDArray[np.bool_] | None:
    """The keep-mask of the polarity stage (``None`` = keep all)."""
    if polarity == "on":
        return p == 1
    if polarity == "off":
        return p == 0
    if polarity in ("merge", "both"):
        return None
    raise ValueError(f"polarity: unknown mode {polarity!r}")


def preprocess(events: Events, cfg: DvsConfig) -> tuple[Events, DvsCounts]:
    """Run the pre-processing core on ``events``: returns ``(events_out, dropped counts)``."""
    words = event_words(np.ascontiguousarray(events))
    t, w1 = words[:, 0], words[:, 1]
    x, y, p = w1 & 0xFFFF, (w1 >> 16) & 0xFFFF, (w1 >> 32) & 0xFF
    keep = _select_polarity(p, cfg.polarity)
    n_polarity = 0 if keep is None else int(len(t) - np.count_nonzero(keep))
    if cfg.polarity == "merge":
        p = np.zeros_like(p)
    if cfg.pooling_x > 1:
        x = x // np.uint64(cfg.pooling_x)
    if cfg.pooling_y > 1:
        y = y // np.uint64(cfg.pooling_y)
    y0, x0, y1, x1 = roi_bounds(cfg)
    n_roi = 0
    all_inside = cfg.roi is None and (len(x) == 0 or (int(x.max()) <= x1 and int(y.max()) <= y1))
    if not all_inside:  # (without a ROI, in-sensor events are all inside: two reductions prove it)
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        n_roi = int(np.count_nonzero(~inside if keep is None else keep & ~inside))
        keep = inside if keep is None else keep & inside
    if keep is not None:
        t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    if x0 or y0:
        x, y = x - np.uint64(x0), y - np.uint64(y0)
    if cfg.mirror_x:
        x = np.uint64(x1 - x0) - x
    if cfg.mirror_y:
        y = np.uint64(y1 - y0) - y
    if cfg.swap_xy:
        x, y = y, x
    out = empty_events_uninitialised(len(t))
    out_words = event_words(out)
    out_words[:, 0] = t
    out_words[:, 1] = x | (y << np.uint64(16)) | (p << np.uint64(32))
    return out, DvsCounts(polarity=n_polarity, roi=n_roi)

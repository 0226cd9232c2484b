"""Core memory and layer → core mapping, as sinabs does it (speck-hardware.md §2).

Memory words a layer needs (``c`` input channels, ``f`` output channels, ``k × k`` kernel,
``oh × ow`` output map; ``⌈log2 1⌉ = 0``)::

    kernel = c · 2^(⌈log2(k·k)⌉ + ⌈log2 f⌉)
    neuron = f · 2^(⌈log2 oh⌉ + ⌈log2 ow⌉)
    bias   = f if the layer has a bias, else 0

A layer fits a core only if all three fit that core's memory (:data:`CORE_MEMORY`).

Mapping: each layer's candidate cores are listed in index order; a bipartite graph
source → layers (capacity 1) → candidate cores (capacity 1) → sink is solved by Edmonds–Karp
with the same adjacency order and breadth-first search as sinabs' ``get_valid_mapping``, so
the assignment equals sinabs' on the same input. A layer pinned with ``CoreLayer.core`` keeps
its core (which must exist, fit, and not be pinned twice); the other layers may not use it.
When no complete assignment exists, :class:`MappingError` names each layer left without a core
and why (memory that fits no core, or a group of layers with fewer candidate cores than layers).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from emulator.config import ChipConfig, CoreLayer

KI = 1024
RESOURCES = ("kernel", "neuron", "bias")


@dataclass(frozen=True)
class LayerMemory:
    """Words of kernel, neuron and bias memory: what a layer needs, or what a core holds."""

    kernel: int
    neuron: int
    bias: int


CORE_MEMORY: tuple[LayerMemory, ...] = (
    *(LayerMemory(16 * KI, 64 * KI, 1 * KI) for _ in range(3)),  # cores 0, 1, 2
    *(LayerMemory(32 * KI, 32 * KI, 1 * KI) for _ in range(2)),  # cores 3, 4
    *(LayerMemory(64 * KI, 16 * KI, 1 * KI) for _ in range(2)),  # cores 5, 6
    *(LayerMemory(16 * KI, 16 * KI, 1 * KI) for _ in range(2)),  # cores 7, 8
)
"""Per-core capacities in words, cores 0–8 (same on Speck2e and Speck2f)."""


class MappingError(ValueError):
    """No valid mapping: ``reasons`` maps each offending layer index to why (also in the message)."""

    def __init__(self, reasons: dict[int, str], names: Sequence[str], memory: Sequence[LayerMemory]) -> None:
        self.reasons = dict(sorted(reasons.items()))
        self.names = tuple(names)
        self.memory = tuple(memory)
        super().__init__("No valid mapping found:\n" + "\n".join(f"  {r}" for r in self.reasons.values()))

    def as_json(self) -> dict[str, Any]:
        """For ``speck-edge map --json``: the reasons and every layer's needs."""
        return {
            "ok": False,
            "reasons": [{"layer": i, "name": self.names[i], "reason": r} for i, r in self.reasons.items()],
            "layers": [{"layer": i, "name": n, **asdict(m)} for i, (n, m) in enumerate(zip(self.names, self.memory))],
        }


def ceil_log2(n: int) -> int:
    """Exact ``⌈log2 n⌉`` for ``n ≥ 1`` (integer arithmetic, no float rounding)."""
    if n < 1:
        raise ValueError(f"ceil_log2 needs n >= 1, got {n}")
    return (n - 1).bit_length()


def layer_memory(layer: CoreLayer) -> LayerMemory:
    """Kernel, neuron and bias words ``layer`` needs (formulas in the module docstring)."""
    c = layer.input_shape[0]
    f, oh, ow = layer.output_shape
    k = layer.kernel
    if oh < 1 or ow < 1:
        raise ValueError(f"layer {layer.name!r}: output size {oh}×{ow} is empty")
    kernel = c << (ceil_log2(k * k) + ceil_log2(f))
    neuron = f << (ceil_log2(oh) + ceil_log2(ow))
    bias = f if layer.bias is not None else 0
    return LayerMemory(kernel, neuron, bias)


def fits(mem: LayerMemory, core: int) -> list[str]:
    """Why ``mem`` does not fit ``core`` (empty list: it fits)."""
    cap = CORE_MEMORY[core]
    return [
        f"{r} {getattr(mem, r)} words > {getattr(cap, r)} on core {core}"
        for r in RESOURCES
        if getattr(mem, r) > getattr(cap, r)
    ]


def candidate_cores(mem: LayerMemory) -> list[int]:
    """Every core ``mem`` fits, in index order."""
    return [core for core in range(len(CORE_MEMORY)) if not fits(mem, core)]


def format_ids(ids: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0–2, 5"``."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def _plural(word: str, ids: Sequence[int]) -> str:
    return f"{word}{'s' if len(ids) != 1 else ''} {format_ids(ids)}"


# --- Edmonds–Karp on the bipartite graph, in sinabs' order -------------------------------------


class _Graph:
    """Residual graph as parallel edge lists; ``adj[node]`` lists edge ids in insertion order."""

    def __init__(self, n_nodes: int) -> None:
        self.adj: list[list[int]] = [[] for _ in range(n_nodes)]
        self.to: list[int] = []
        self.cap: list[int] = []
        self.flow: list[int] = []
        self.rev: list[int] = []

    def add(self, s: int, t: int) -> None:
        """A capacity-1 edge s → t and its capacity-0 reverse t → s."""
        e = len(self.to)
        self.to += [t, s]
        self.cap += [1, 0]
        self.flow += [0, 0]
        self.rev += [e + 1, e]
        self.adj[s].append(e)
        self.adj[t].append(e + 1)

    def augment(self, source: int, sink: int) -> bool:
        """One breadth-first search (visiting all reachable nodes, as sinabs does); push 1 unit."""
        pred: list[int | None] = [None] * len(self.adj)
        queue = deque([source])
        while queue:
            node = queue.popleft()
            for e in self.adj[node]:
                t = self.to[e]
                if pred[t] is None and t != source and self.cap[e] > self.flow[e]:
                    pred[t] = e
                    queue.append(t)
        if pred[sink] is None:
            return False
        edge = pred[sink]
        while edge is not None:
            self.flow[edge] += 1
            self.flow[self.rev[edge]] -= 1
            edge = pred[self.to[self.rev[edge]]]
        return True


def max_flow_assignment(candidates: Sequence[Sequence[int]], n_cores: int = len(CORE_MEMORY)) -> list[int | None]:
    """Layer i → core (or ``None``) by Edmonds–Karp; nodes: source, layers, cores, sink (sinabs' layout)."""
    n = len(candidates)
    source, sink = 0, n + n_cores + 1
    graph = _Graph(n + n_cores + 2)
    for i in range(n):
        graph.add(source, i + 1)
    for i, cores in enumerate(candidates):
        for core in cores:
            graph.add(i + 1, n + 1 + core)
    for core in range(n_cores):
        graph.add(n + 1 + core, sink)
    while graph.augment(source, sink):
        pass
    result: list[int | None] = [None] * n
    for i in range(n):
        for e in graph.adj[i + 1]:
            if graph.cap[e] == 1 and graph.flow[e] == 1:
                result[i] = graph.to[e] - n - 1
    return result


# --- mapping -------------------------------------------------------------------------------------


class CoreRow(NamedTuple):
    """One core in a mapping report (``layer`` and ``name`` are ``None`` when the core is free)."""

    core: int
    layer: int | None
    name: str | None
    used: LayerMemory
    available: LayerMemory


@dataclass(frozen=True)
class Mapping:
    """A complete assignment: ``cores[i]`` is the core of layer ``i``."""

    cores: tuple[int, ...]
    names: tuple[str, ...]
    memory: tuple[LayerMemory, ...]

    def as_dict(self) -> dict[int, int]:
        return dict(enumerate(self.cores))

    def report(self) -> tuple[CoreRow, ...]:
        """One row per core 0–8: its layer (or free), words used and available."""
        on_core = {core: i for i, core in enumerate(self.cores)}
        free = LayerMemory(0, 0, 0)
        rows = []
        for core, cap in enumerate(CORE_MEMORY):
            i = on_core.get(core)
            name = None if i is None else self.names[i]
            rows.append(CoreRow(core, i, name, free if i is None else self.memory[i], cap))
        return tuple(rows)


def _layers_of(config_or_layers: ChipConfig | Sequence[CoreLayer]) -> tuple[CoreLayer, ...]:
    if isinstance(config_or_layers, ChipConfig):
        return tuple(config_or_layers.layers)
    return tuple(config_or_layers)


def _label(i: int, layers: Sequence[CoreLayer]) -> str:
    return f"layer {i} {layers[i].name!r}"


def _pin_reasons(layers: Sequence[CoreLayer], memory: Sequence[LayerMemory]) -> dict[int, str]:
    reasons: dict[int, str] = {}
    first_pin: dict[int, int] = {}
    for i, layer in enumerate(layers):
        core = layer.core
        if core is None:
            continue
        if not 0 <= core < len(CORE_MEMORY):
            reasons[i] = f"{_label(i, layers)}: pinned core {core} does not exist (cores 0–{len(CORE_MEMORY) - 1})"
        elif core in first_pin:
            reasons[i] = f"{_label(i, layers)}: pinned to core {core}, as is {_label(first_pin[core], layers)}"
        elif why := fits(memory[i], core):
            reasons[i] = f"{_label(i, layers)}: pinned to core {core}, which it does not fit — {'; '.join(why)}"
        if 0 <= core < len(CORE_MEMORY):
            first_pin.setdefault(core, i)
    return reasons


def _fits_no_core(mem: LayerMemory) -> str:
    """Why a layer fits no core at all: a resource beyond every core, or no core with all three."""
    over = []
    for r in RESOURCES:
        need = getattr(mem, r)
        largest = max(getattr(cap, r) for cap in CORE_MEMORY)
        if need > largest:
            where = [c for c, cap in enumerate(CORE_MEMORY) if getattr(cap, r) == largest]
            over.append(f"{r} {need} words > {largest} (largest {r} memory, {_plural('core', where)})")
    if over:
        return "; ".join(over)
    each = [
        f"{r} {getattr(mem, r)} words fits only {_plural('core', cores)}"
        for r in RESOURCES
        if len(cores := [c for c, cap in enumerate(CORE_MEMORY) if getattr(mem, r) <= getattr(cap, r)])
        < len(CORE_MEMORY)
    ]
    return "no core has room for all three: " + ", ".join(each)


def _hall_group(
    start: int, candidates: Sequence[Sequence[int]], assigned: Sequence[int | None]
) -> tuple[set[int], set[int]]:
    """Layers reachable from unassigned ``start`` by alternating paths, and their candidate cores.

    Every such core is taken by a layer of the group (else max-flow would have found a path),
    so the group has more layers than cores it can use.
    """
    holder = {core: i for i, core in enumerate(assigned) if core is not None}
    group, cores = {start}, set[int]()
    queue = deque([start])
    while queue:
        for core in candidates[queue.popleft()]:
            if core not in cores:
                cores.add(core)
                if core in holder and holder[core] not in group:
                    group.add(holder[core])
                    queue.append(holder[core])
    return group, cores


def _unassigned_reason(
    i: int,
    layers: Sequence[CoreLayer],
    raw: Sequence[int],
    candidates: Sequence[Sequence[int]],
    assigned: Sequence[int | None],
    pinned_by: dict[int, int],
) -> str:
    label = _label(i, layers)
    if not raw:
        return f"{label}: fits no core — {_fits_no_core(layer_memory(layers[i]))}"
    taken = sorted(c for c in raw if c in pinned_by)
    pins = f"{_plural('core', taken)} pinned by {_plural('layer', sorted({pinned_by[c] for c in taken}))}"
    if not candidates[i]:
        return f"{label}: fits only {_plural('core', raw)}, all taken — {pins}"
    group, cores = _hall_group(i, candidates, assigned)
    holders = sorted({j for j, core in enumerate(assigned) if core in candidates[i]})
    msg = (
        f"{label}: no free core — it fits only {_plural('core', candidates[i])}, "
        f"which {_plural('layer', holders)} already use; "
        f"layers {format_ids(group)} together fit only {_plural('core', sorted(cores))} "
        f"({len(group)} layers, {len(cores)} cores)"
    )
    return msg + (f"; {pins}" if taken else "")


def map_layers(config_or_layers: ChipConfig | Sequence[CoreLayer]) -> Mapping:
    """Assign every layer a core (pins honoured, the rest by sinabs' max-flow); :class:`MappingError` if none."""
    layers = _layers_of(config_or_layers)
    memory = tuple(layer_memory(layer) for layer in layers)
    names = tuple(layer.name for layer in layers)
    if len(layers) > len(CORE_MEMORY):
        extra = {i: f"{_label(i, layers)}: only {len(CORE_MEMORY)} cores" for i in range(len(CORE_MEMORY), len(layers))}
        raise MappingError(extra, names, memory)
    if reasons := _pin_reasons(layers, memory):
        raise MappingError(reasons, names, memory)
    pinned_by = {layer.core: i for i, layer in enumerate(layers) if layer.core is not None}
    raw = [candidate_cores(m) for m in memory]
    candidates = [
        [layer.core] if layer.core is not None else [c for c in raw[i] if c not in pinned_by]
        for i, layer in enumerate(layers)
    ]
    assigned = max_flow_assignment(candidates)
    missing = [i for i, core in enumerate(assigned) if core is None]
    if missing:
        reasons = {i: _unassigned_reason(i, layers, raw[i], candidates, assigned, pinned_by) for i in missing}
        raise MappingError(reasons, names, memory)
    return Mapping(tuple(c for c in assigned if c is not None), names, memory)


# --- output for the CLI ----------------------------------------------------------------------------


def format_table(mapping: Mapping) -> str:
    """Per-core table: layer (or free), kernel / neuron / bias words used of available."""
    head = ("core", "layer", "kernel", "neuron", "bias")
    body = [
        (
            str(row.core),
            "free" if row.layer is None else f"{row.layer} {row.name}",
            *(f"{getattr(row.used, r)} / {getattr(row.available, r)}" for r in RESOURCES),
        )
        for row in mapping.report()
    ]
    widths = [max(len(cells[j]) for cells in (head, *body)) for j in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) if j < 2 else cell.rjust(w) for j, (cell, w) in enumerate(zip(cells, widths))).rstrip()
        for cells in (head, *body)
    )


def as_json(mapping: Mapping) -> dict[str, Any]:
    """For ``speck-edge map --json``: the assignment and one entry per core."""
    return {
        "ok": True,
        "assignment": [
            {"layer": i, "name": n, "core": c} for i, (n, c) in enumerate(zip(mapping.names, mapping.cores))
        ],
        "cores": [
            {"core": r.core, "layer": r.layer, "name": r.name, "used": asdict(r.used), "available": asdict(r.available)}
            for r in mapping.report()
        ],
    }

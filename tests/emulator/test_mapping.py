"""Core memory formulas (hand-computed from speck-hardware.md §2) and sinabs-order max-flow mapping."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.config import ChipConfig, CoreLayer
from emulator.mapping import (
    CORE_MEMORY,
    LayerMemory,
    Mapping,
    MappingError,
    as_json,
    candidate_cores,
    ceil_log2,
    fits,
    format_ids,
    format_table,
    layer_memory,
    map_layers,
    max_flow_assignment,
)


def conv(
    name: str, c: int, hw: int | tuple[int, int], f: int, k: int, s: int = 1, p: int = 0, *, bias: bool = False
) -> CoreLayer:
    h, w = (hw, hw) if isinstance(hw, int) else hw
    return CoreLayer(
        name=name,
        input_shape=(c, h, w),
        weights=np.zeros((f, c, k, k), np.int8),
        threshold_high=1,
        bias=np.zeros(f, np.int16) if bias else None,
        stride=s,
        padding=p,
    )


def pinned(layer: CoreLayer, core: int) -> CoreLayer:
    return CoreLayer(
        name=layer.name,
        input_shape=layer.input_shape,
        weights=layer.weights,
        threshold_high=layer.threshold_high,
        bias=layer.bias,
        stride=layer.stride,
        padding=layer.padding,
        core=core,
    )


def paper_net() -> list[CoreLayer]:
    """Input(2×32×32)-32C3S1-32C3S2-32C3S1-AP4-32FC, the FC as a 4×4 conv on the pooled 32×4×4 map."""
    return [
        conv("conv1", 2, 32, 32, 3, 1, 1, bias=True),
        conv("conv2", 32, 32, 32, 3, 2, 1, bias=True),
        conv("conv3", 32, 16, 32, 3, 1, 1, bias=True),
        conv("fc", 32, 4, 32, 4, bias=True),
    ]


def big_neuron(name: str) -> CoreLayer:
    """16 channels × 64×64 output = 65536 neuron words: only cores 0–2."""
    return conv(name, 1, 64, 16, 1)


def big_kernel(name: str) -> CoreLayer:
    """2 · 2^(8 + 7) = 65536 kernel words: only cores 5–6."""
    return conv(name, 2, 16, 128, 16)


# --- memory --------------------------------------------------------------------------------------


def test_core_memory_table() -> None:
    ki = 1024
    expected = [(16, 64, 1)] * 3 + [(32, 32, 1)] * 2 + [(64, 16, 1)] * 2 + [(16, 16, 1)] * 2
    assert CORE_MEMORY == tuple(LayerMemory(k * ki, n * ki, b * ki) for k, n, b in expected)


def test_ceil_log2_is_exact() -> None:
    assert [ceil_log2(n) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17, 25, 1024, 1025)] == [
        0,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
        10,
        11,
    ]
    for e in range(1, 80):  # where float log2 would round wrongly
        assert ceil_log2(2**e) == e and ceil_log2(2**e + 1) == e + 1 and ceil_log2(2**e - 1) == (e if e > 1 else 0)
    with pytest.raises(ValueError):
        ceil_log2(0)


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        # paper net: c · 2^(⌈log2 9⌉=4 + ⌈log2 32⌉=5); 32 · 2^(5+5); bias 32
        (paper_net()[0], LayerMemory(2 * 2**9, 32 * 2**10, 32)),  # 1024, 32768
        (paper_net()[1], LayerMemory(32 * 2**9, 32 * 2**8, 32)),  # stride 2 → 16×16: 16384, 8192
        (paper_net()[2], LayerMemory(32 * 2**9, 32 * 2**8, 32)),
        (paper_net()[3], LayerMemory(32 * 2**9, 32 * 2**0, 32)),  # FC: 4×4 kernel → 1×1 output
        (conv("k1f1", 1, 1, 1, 1), LayerMemory(1, 1, 0)),  # ⌈log2 1⌉ = 0 everywhere
        (conv("odd", 3, (10, 7), 6, 5, bias=True), LayerMemory(3 * 2**8, 6 * 2**5, 6)),  # 6×3 out: 768, 192
        (conv("f17", 5, 64, 17, 2, 2), LayerMemory(5 * 2**7, 17 * 2**10, 0)),  # 32×32 out: 640, 17408
        (conv("edge", 8, 64, 16, 1), LayerMemory(8 * 2**4, 16 * 2**12, 0)),  # 64×64 out: 128, 65536
        (conv("o33", 1, 33, 1, 1), LayerMemory(1, 2**12, 0)),  # 33 rounds up to 64
        (conv("pad", 2, 5, 3, 3, p=2), LayerMemory(2 * 2**6, 3 * 2**6, 0)),  # 7×7 out: 128, 192
        (conv("s4", 1, (100, 60), 1, 4, 4), LayerMemory(2**4, 2 ** (5 + 4), 0)),  # 25×15 out: 16, 512
        (conv("huge", 3, 16, 128, 16), LayerMemory(3 * 2**15, 128, 0)),  # 98304
    ],
    ids=lambda v: v.name if isinstance(v, CoreLayer) else "",
)
def test_layer_memory_hand_computed(layer: CoreLayer, expected: LayerMemory) -> None:
    assert layer_memory(layer) == expected


def test_fits_reasons() -> None:
    wide = layer_memory(conv("wide", 5, 4, 256, 4))  # 5 · 2^(4 + 8) = 20480
    assert wide == LayerMemory(20480, 256, 0)
    assert fits(wide, 0) == ["kernel 20480 words > 16384 on core 0"]
    assert fits(wide, 3) == []
    assert candidate_cores(wide) == [3, 4, 5, 6]
    both = LayerMemory(70000, 20000, 2000)
    assert fits(both, 7) == [
        "kernel 70000 words > 16384 on core 7",
        "neuron 20000 words > 16384 on core 7",
        "bias 2000 words > 1024 on core 7",
    ]
    assert candidate_cores(layer_memory(big_neuron("n"))) == [0, 1, 2]
    assert candidate_cores(layer_memory(big_kernel("k"))) == [5, 6]


def test_format_ids() -> None:
    assert format_ids([5, 0, 1, 2, 6, 8]) == "0–2, 5–6, 8"
    assert format_ids([3]) == "3"


# --- max-flow in sinabs' order -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([list(range(9))] * 5, [0, 1, 2, 3, 4]),
        ([[0, 1], [0]], [1, 0]),  # layer 0 moves over
        ([[0, 1, 2], [0, 1], [0, 1]], [2, 1, 0]),  # shortest path L2→c0→L0→c2, not L2→c1→L1→…
        ([[1, 2], [0, 1], [1]], [2, 0, 1]),
        ([[0], [0]], [0, None]),
    ],
)
def test_max_flow_tie_breaking_matches_sinabs(candidates: list[list[int]], expected: list[int | None]) -> None:
    """Hand-traced breadth-first search with sinabs' adjacency order (reverse edges first, targets ascending)."""
    assert max_flow_assignment(candidates) == expected


def _maximum_matching_size(candidates: list[list[int]]) -> int:
    for size in range(len(candidates), 0, -1):
        for rows in itertools.combinations(range(len(candidates)), size):
            if any(len(set(p)) == size for p in itertools.product(*(candidates[r] for r in rows))):
                return size
    return 0


@given(st.lists(st.lists(st.integers(0, 5), max_size=4, unique=True).map(sorted), max_size=6))
def test_max_flow_is_a_maximum_matching(candidates: list[list[int]]) -> None:
    result = max_flow_assignment(candidates, n_cores=6)
    used = [core for core in result if core is not None]
    assert len(used) == len(set(used))
    assert all(core is None or core in cands for core, cands in zip(result, candidates))
    assert len(used) == _maximum_matching_size(candidates)


# --- map_layers ------------------------------------------------------------------------------------


def test_paper_net_maps_in_index_order() -> None:
    mapping = map_layers(paper_net())
    assert mapping.cores == (0, 1, 2, 3)
    assert mapping.as_dict() == {0: 0, 1: 1, 2: 2, 3: 3}
    assert map_layers(ChipConfig(layers=tuple(paper_net()))) == mapping


def test_big_kernels_go_to_cores_5_and_6() -> None:
    layers = [paper_net()[0], big_kernel("big1"), conv("wide", 5, 4, 256, 4), big_kernel("big2"), paper_net()[3]]
    assert map_layers(layers).cores == (0, 5, 3, 6, 1)


def test_max_flow_reassigns_where_greedy_fails() -> None:
    first = conv("first", 2, 32, 32, 3, p=1)  # neuron 32768: cores 0–4
    layers = [first, big_neuron("a"), big_neuron("b"), big_neuron("c")]  # each only cores 0–2
    cands = [candidate_cores(layer_memory(layer)) for layer in layers]
    assert cands == [[0, 1, 2, 3, 4], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    taken: list[int] = []
    for c in cands:  # greedy, in order: first free candidate
        taken += [core for core in c if core not in taken][:1]
    assert len(taken) == 3  # the last layer finds nothing
    assert map_layers(layers).cores == (3, 1, 2, 0)


def test_impossible_layer_is_named() -> None:
    layers = [*paper_net()[:3], conv("fc", 3, 16, 128, 16)]
    with pytest.raises(MappingError) as err:
        map_layers(layers)
    assert isinstance(err.value, ValueError)
    assert err.value.reasons == {
        3: "layer 3 'fc': fits no core — kernel 98304 words > 65536 (largest kernel memory, cores 5–6)"
    }
    assert "No valid mapping found" in str(err.value) and "layer 3 'fc'" in str(err.value)


def test_layer_whose_needs_no_single_core_meets() -> None:
    layer = conv("split", 2, 31, 128, 16)  # kernel 65536 (cores 5–6), neuron 128 · 2^8 = 32768 (cores 0–4)
    with pytest.raises(MappingError) as err:
        map_layers([layer])
    assert err.value.reasons[0] == (
        "layer 0 'split': fits no core — no core has room for all three: "
        "kernel 65536 words fits only cores 5–6, neuron 32768 words fits only cores 0–4"
    )


def test_too_many_layers_for_a_group_of_cores() -> None:
    layers = [big_neuron(n) for n in "abcd"]
    with pytest.raises(MappingError) as err:
        map_layers(layers)
    assert err.value.reasons == {
        3: "layer 3 'd': no free core — it fits only cores 0–2, which layers 0–2 already use; "
        "layers 0–3 together fit only cores 0–2 (4 layers, 3 cores)"
    }


def test_more_layers_than_cores() -> None:
    layers = [conv(f"l{i}", 1, 1, 1, 1) for i in range(10)]
    with pytest.raises(MappingError) as err:
        map_layers(layers)
    assert err.value.reasons == {9: "layer 9 'l9': only 9 cores"}


def test_pins_are_honoured() -> None:
    layers = paper_net()
    layers[0] = pinned(layers[0], 1)
    assert map_layers(layers).cores == (1, 0, 2, 3)
    layers[3] = pinned(layers[3], 0)
    assert map_layers(layers).cores == (1, 2, 3, 0)


def test_bad_pins_are_refused() -> None:
    wide = pinned(conv("wide", 5, 4, 256, 4), 0)
    with pytest.raises(MappingError) as err:
        map_layers([wide])
    assert err.value.reasons == {
        0: "layer 0 'wide': pinned to core 0, which it does not fit — kernel 20480 words > 16384 on core 0"
    }
    twice = [pinned(conv("a", 1, 1, 1, 1), 4), pinned(conv("b", 1, 1, 1, 1), 4)]
    with pytest.raises(MappingError) as err:
        map_layers(twice)
    assert err.value.reasons == {1: "layer 1 'b': pinned to core 4, as is layer 0 'a'"}


def test_pins_can_leave_a_layer_without_candidates() -> None:
    layers = [pinned(conv(n, 1, 1, 1, 1), core) for n, core in zip("xyz", (2, 0, 1))] + [big_neuron("n")]
    with pytest.raises(MappingError) as err:
        map_layers(layers)
    assert err.value.reasons == {3: "layer 3 'n': fits only cores 0–2, all taken — cores 0–2 pinned by layers 0–2"}


# --- report --------------------------------------------------------------------------------------


def test_report_table_and_json() -> None:
    mapping = map_layers(paper_net())
    rows = mapping.report()
    assert [r.core for r in rows] == list(range(9))
    assert rows[0].layer == 0 and rows[0].name == "conv1" and rows[0].used == LayerMemory(1024, 32768, 32)
    assert rows[0].available == CORE_MEMORY[0]
    assert rows[8].layer is None and rows[8].used == LayerMemory(0, 0, 0)
    table = format_table(mapping)
    lines = table.splitlines()
    assert lines[0].split() == ["core", "layer", "kernel", "neuron", "bias"]
    assert lines[1].split() == ["0", "0", "conv1", "1024", "/", "16384", "32768", "/", "65536", "32", "/", "1024"]
    assert lines[9].split()[:2] == ["8", "free"]
    doc = as_json(mapping)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["assignment"][3] == {"layer": 3, "name": "fc", "core": 3}
    assert doc["cores"][4]["layer"] is None and doc["cores"][4]["available"] == {
        "kernel": 32768,
        "neuron": 32768,
        "bias": 1024,
    }


def test_error_json() -> None:
    with pytest.raises(MappingError) as err:
        map_layers([big_neuron(n) for n in "abcd"])
    doc = err.value.as_json()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["ok"] is False and [r["layer"] for r in doc["reasons"]] == [3]
    assert doc["layers"][0] == {"layer": 0, "name": "a", "kernel": 16, "neuron": 65536, "bias": 0}


def test_mapping_is_frozen() -> None:
    mapping = map_layers(paper_net())
    assert isinstance(mapping, Mapping)
    with pytest.raises(AttributeError):
        mapping.cores = (8,)  # type: ignore[misc]


def test_group_reason_follows_the_chain_of_displaced_layers() -> None:
    mid = [conv(n, 5, (11, 19), 256, 4) for n in ("m1", "m2")]  # kernel 20480, neuron 32768: cores 3–4 only
    layers = [conv("first", 2, 32, 32, 3, p=1), big_neuron("a"), big_neuron("b"), big_neuron("c"), *mid]
    assert candidate_cores(layer_memory(mid[0])) == [3, 4]
    assert max_flow_assignment([candidate_cores(layer_memory(la)) for la in layers]) == [0, 1, 2, None, 3, 4]
    with pytest.raises(MappingError) as err:
        map_layers(layers)
    assert err.value.reasons == {
        3: "layer 3 'c': no free core — it fits only cores 0–2, which layers 0–2 already use; "
        "layers 0–5 together fit only cores 0–4 (6 layers, 5 cores)"  # layer 0 could leave, but only for 3–4
    }

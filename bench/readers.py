"""Reader throughput (M events/s) against the peer readers, on the same files in the same run.

Run: ``pip install -e '.[dev]' && python bench/readers.py [--reps N] [--big-events N]``.

Peers, each doing the same job (file → events with x, y, t, p):

* AEDAT 2.0 — tonic: ``tonic.io.get_aer_events_from_file`` plus the address decoding of
  ``tonic.io.read_dvs_128`` (which itself crashes in tonic 1.7: its header helper now
  returns three values), as tonic would do it.
* AEDAT 4 — ``aedat.Decoder`` (Rust), all event packets concatenated.
* EVT 3 / EVT 2 / DAT — ``expelliarmus.Wizard(...).read()`` (C).

Each reader runs once to warm up (numba loads its cache), then ``--reps`` times,
alternating with the others run by run; the median is reported. Timings include opening and reading the file (page-cached).
Large synthetic AEDAT 2.0 and DAT files (real records repeated, written to a temp dir)
show the steady-state rate once per-file costs no longer dominate. "ours" reads the
whole file into one array (what the peers do); "chunked" is the bounded-memory
iterator the services use. The ratio is peer time / our one-array time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emulator.io import open_recording, read_recording

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

CASES = (
    ("aedat2", "AlexOuyang-DVS128DataAnalysis/cam255_alex_standing_up.aedat", "tonic"),
    ("aedat4", "tonic-testdata/sample.aedat4", "aedat"),
    ("aedat4", "aestream/davis.aedat4", "aedat"),
    ("evt3", "expelliarmus/evt3_sample.raw", "expelliarmus"),
    ("evt2", "expelliarmus/evt2_sample.raw", "expelliarmus"),
    ("dat", "tonic-testdata/sample_ncars.dat", "expelliarmus"),
)


def ours(path: Path) -> int:
    events, _ = read_recording(path)
    return len(events)


def ours_chunked(path: Path) -> int:
    """The bounded-memory path the services use: 64 k-event chunks, never the whole file."""
    return sum(len(chunk) for chunk in open_recording(path, chunk_events=1 << 16).chunks)


def tonic_aedat2(path: Path) -> int:
    import tonic.io

    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    raw = tonic.io.get_aer_events_from_file(str(path), version, start)
    addr = raw["address"]
    events = tonic.io.make_structured_array((addr >> 8) & 0x7F, (addr >> 1) & 0x7F, raw["timeStamp"], addr & 1)
    return len(events)


def aedat_decoder(path: Path) -> int:
    import aedat

    # strictest for us: the peer's packets are not even concatenated into one array
    return sum(len(p["events"]) for p in aedat.Decoder(str(path)) if "events" in p)


def expelliarmus_wizard(encoding: str) -> Callable[[Path], int]:
    def read(path: Path) -> int:
        from expelliarmus import Wizard

        return len(Wizard(encoding=encoding, fpath=str(path)).read())

    return read


def peer_for(fmt: str, name: str) -> Callable[[Path], int]:
    if name == "tonic":
        return tonic_aedat2
    if name == "aedat":
        return aedat_decoder
    return expelliarmus_wizard(fmt)


def median_seconds(fns: list[Callable[[Path], int]], path: Path, reps: int) -> list[tuple[float, int]]:
    """Median time and event count of each reader, the readers alternating run by run
    (so a noisy moment of the shared machine hits them alike)."""
    counts = [fn(path) for fn in fns]  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn(path)
            ts.append(time.perf_counter() - t)
    return [(statistics.median(ts), n) for ts, n in zip(times, counts, strict=True)]


def big_copy(src: Path, n_events: int, out_dir: Path, record: str, t_col: int) -> Path:
    """A large file made of ``src``'s header and its fixed-size records repeated, time shifted.

    ``record`` is the numpy type of one record's two 32-bit words (``">u4"`` for AEDAT 2.0,
    ``"<u4"`` for DAT), ``t_col`` the word holding the timestamp.
    """
    data = src.read_bytes()
    n_src = len(read_recording(src)[0])
    head, body = (
        data[: len(data) - 8 * n_src],
        np.frombuffer(data[len(data) - 8 * n_src :], dtype=record).reshape(-1, 2),
    )
    reps = -(-n_events // n_src)
    span = int(body[-1, t_col]) - int(body[0, t_col]) + 1
    tiles = np.tile(body, (reps, 1)).astype(np.uint64)
    tiles[:, t_col] = (tiles[:, t_col] + np.repeat(np.arange(reps, dtype=np.uint64) * span, n_src)) % (1 << 32)
    path = out_dir / f"big{src.suffix}"
    path.write_bytes(head + tiles[:n_events].astype(record).tobytes())
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--big-events", type=int, default=20_000_000)
    args = ap.parse_args()
    print(f"{'format':7} {'file':52} {'events':>9} {'ours':>7} {'chunked':>8} {'peer':>13} {'peer':>7} {'ratio':>6}")
    print(f"{'':7} {'':52} {'':>9} {'Mev/s':>7} {'Mev/s':>8} {'':>13} {'Mev/s':>7} {'':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        big = [
            ("aedat2", str(big_copy(REAL / CASES[0][1], args.big_events, Path(tmp), ">u4", 1)), "tonic"),
            ("dat", str(big_copy(REAL / CASES[-1][1], args.big_events // 4, Path(tmp), "<u4", 0)), "expelliarmus"),
        ]
        for fmt, rel, peer in [*CASES, *big]:
            path = REAL / rel
            (t_ours, n), (t_chunked, _), (t_peer, n_peer) = median_seconds(
                [ours, ours_chunked, peer_for(fmt, peer)], path, args.reps
            )
            if n != n_peer:
                raise SystemExit(f"{rel}: ours read {n} events, {peer} read {n_peer}")
            name = rel if not Path(rel).is_absolute() else f"synthetic: real records repeated ({n / 1e6:.0f} M)"
            print(
                f"{fmt:7} {name:52} {n:9d} {n / t_ours / 1e6:7.1f} {n / t_chunked / 1e6:8.1f} {peer:>13}"
                f" {n / t_peer / 1e6:7.1f} {t_peer / t_ours:5.2f}x"
            )


if __name__ == "__main__":
    main()

"""The dv NetworkWriter client, against the real dv-processing writer and a scripted server."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from emulator.io import RecordingError
from proto.events import Events, make_events
from services.dvlive import LiveStream, WriterClosed, open_live
from tests.io.make_aedat4_evt import compress, evts_flatbuffer, io_header, stream_xml

dv = pytest.importorskip("dv_processing")

from tests.net import free_port
from tests.services.dv_writer import DEADLINE_S, SENT, store, wait_for_clients, writer_on_free_port


def _read_n(live: LiveStream, n: int) -> list[Events]:
    got: list[Events] = []
    deadline = time.monotonic() + DEADLINE_S
    while sum(map(len, got)) < n:
        assert time.monotonic() < deadline, f"only {sum(map(len, got))} of {n} events arrived"
        packet = live.read(timeout_s=0.5)
        if packet is not None:
            got.append(packet)
    return got


@pytest.mark.parametrize("compression", ["NONE", "LZ4", "ZSTD"])
def test_receives_exactly_what_the_real_writer_sends(compression: str) -> None:
    writer, port = writer_on_free_port(compression)
    with open_live("127.0.0.1", port, timeout_s=DEADLINE_S) as live:
        assert (live.info.format, live.info.width, live.info.height) == ("dv-network", 128, 96)
        assert live.info.time_origin == "unix epoch"
        assert live.info.header["compression"] == compression.replace("NONE", "none")
        assert str(live.info.path).endswith(f"127.0.0.1:{port}")
        wait_for_clients(writer, 1)
        for events in SENT:
            writer.writeEvents(store(events))
        got = _read_n(live, sum(map(len, SENT)))
        assert np.array_equal(np.concatenate(got), np.concatenate(SENT))
        assert all(p.flags.writeable for p in got)
        assert live.read(timeout_s=0.05) is None  # nothing more: a timeout, not an error
    # the writer's destructor deadlocks while a client is connected: let it see us leave first
    wait_for_clients(writer, 0)
    del writer


WRITER_PROCESS = """
import os, sys
import dv_processing as dv
writer = dv.io.NetworkWriter("127.0.0.1", int(sys.argv[1]), dv.io.Stream.EventStream(0, "e", "TEST", (128, 96)))
print("listening", flush=True)
sys.stdin.readline()  # the client has connected
store = dv.EventStore()
for i in range(20):
    store.push_back(1000 + i, i, 2 * i, i % 2 == 0)
writer.writeEvents(store)
sys.stdin.readline()  # the client has the events (a queue count of 0 does not mean sent)
os._exit(0)  # the process ends (its destructor would wait for the client): the kernel closes the socket
"""


def test_writer_process_exit_raises_writer_closed() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_PROCESS, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "listening"
        with open_live("127.0.0.1", port, timeout_s=DEADLINE_S) as live:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            got = np.concatenate(_read_n(live, 20))
            assert got["x"].tolist() == list(range(20)) and got["t"].tolist() == list(range(1000, 1020))
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            with pytest.raises(WriterClosed):
                while True:  # read returns None on timeouts until the close arrives
                    live.read(timeout_s=DEADLINE_S)
        assert proc.wait(timeout=DEADLINE_S) == 0
    finally:
        proc.kill()
        proc.wait()


# --- a scripted server, for what the real writer never sends ---------------------------------------

TWO_STREAMS = ((0, "EVTS", 64, 48), (1, "IMUS", 0, 0))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def _connect(listener: socket.socket, compression: int = 0) -> tuple[LiveStream, socket.socket, int]:
    """Open a LiveStream on ``listener``; return it, the server's end, and the header's length."""
    header = io_header(stream_xml(TWO_STREAMS), compression)
    peers: list[socket.socket] = []

    def accept_and_send_header() -> None:
        conn, _ = listener.accept()
        conn.sendall(struct.pack("<i", len(header)) + header)
        peers.append(conn)

    thread = threading.Thread(target=accept_and_send_header)
    thread.start()
    live = open_live("127.0.0.1", listener.getsockname()[1], timeout_s=DEADLINE_S)
    thread.join()
    return live, peers[0], 4 + len(header)


def _packet(stream_id: int, payload: bytes) -> bytes:
    return struct.pack("<ii", stream_id, len(payload)) + payload


def _small(n: int, t0: int) -> Events:
    i = np.arange(n)
    return make_events(t0 + i, i % 64, i % 48, i % 2)


@pytest.mark.parametrize("compression", [0, 1, 3])
def test_packets_in_pieces_and_other_streams(listener: socket.socket, compression: int) -> None:
    live, peer, _ = _connect(listener, compression)
    a, b = _small(10, 100), _small(3, 200)
    first = _packet(0, compress(evts_flatbuffer(a), compression))
    peer.sendall(first[:11])
    assert live.read(timeout_s=0.05) is None  # half a packet: kept for the next read
    peer.sendall(first[11:] + _packet(1, b"imu samples") + _packet(0, compress(evts_flatbuffer(b), compression)))
    got_a, got_b = live.read(timeout_s=DEADLINE_S), live.read(timeout_s=DEADLINE_S)
    assert got_a is not None and np.array_equal(got_a, a)
    assert got_b is not None and np.array_equal(got_b, b)
    assert live.dropped == {"IMUS": 1}
    live.close()
    peer.close()


def test_zero_timeout_polls_and_big_packets_arrive_whole(listener: socket.socket) -> None:
    live, peer, _ = _connect(listener)
    big = _small(200_000, 0)  # 3.2 MB: more than the socket buffers and one recv
    sender = threading.Thread(target=peer.sendall, args=(_packet(0, evts_flatbuffer(big)),))
    sender.start()
    deadline = time.monotonic() + DEADLINE_S
    while (got := live.read(timeout_s=0)) is None:
        assert time.monotonic() < deadline, "the packet never completed"
    sender.join()
    assert np.array_equal(got, big)
    live.close()
    peer.close()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (_packet(9, b"x"), "stream id"),
        (struct.pack("<ii", 0, -1), "packet size"),
        (_packet(0, evts_flatbuffer(_small(2, 0), count=99)), "event vector"),
        (_packet(0, evts_flatbuffer(make_events([1], [0], [48], [0]))), "64x48"),
    ],
    ids=["unknown-stream", "negative-size", "vector-too-long", "outside-sensor"],
)
def test_malformed_packet_names_its_stream_offset(listener: socket.socket, bad: bytes, match: str) -> None:
    live, peer, start = _connect(listener)
    good = _packet(0, evts_flatbuffer(_small(4, 0)))
    peer.sendall(good + bad)
    first = live.read(timeout_s=DEADLINE_S)
    assert first is not None and len(first) == 4
    with pytest.raises(RecordingError, match=match) as err:
        live.read(timeout_s=DEADLINE_S)
    assert err.value.offset == start + len(good)
    with pytest.raises(RecordingError):  # the stream cannot be resynchronised: the error stays
        live.read(timeout_s=0)
    live.close()
    peer.close()


def test_writer_closing_mid_packet(listener: socket.socket) -> None:
    live, peer, _ = _connect(listener)
    peer.sendall(_packet(0, evts_flatbuffer(_small(4, 0)))[:20])
    peer.close()
    with pytest.raises(WriterClosed) as err:
        live.read(timeout_s=DEADLINE_S)
    assert err.value.pending == 20
    assert isinstance(err.value, ConnectionError)
    live.close()


def test_no_header_times_out(listener: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        open_live("127.0.0.1", listener.getsockname()[1], timeout_s=0.1)  # connected, never accepted


def test_nobody_listening() -> None:
    with pytest.raises(ConnectionRefusedError):
        open_live("127.0.0.1", free_port(), timeout_s=1.0)

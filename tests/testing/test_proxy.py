"""FaultProxy against a real echo server on 127.0.0.1: each mode as the client sees it."""

from __future__ import annotations

import socket
import time

import gevent
import pytest
from gevent import socket as gsocket

from geventpool import ConfigurationError
from geventpool.testing import EchoServer, FaultProxy, fd_count, greenlet_count, wait_until

REPLY_TIMEOUT = 3.0


def connect(proxy: FaultProxy, timeout: float = REPLY_TIMEOUT) -> gsocket.socket:
    return gsocket.create_connection(proxy.address, timeout=timeout)


def read_exactly(sock: gsocket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {data!r}, expected {n} bytes")
        data += chunk
    return data


def read_to_eof(sock: gsocket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def round_trip(sock: gsocket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return read_exactly(sock, len(payload))


# -- pass, counters, lifecycle -------------------------------------------------------------


def test_pass_relays_both_ways_and_counts(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"hello") == b"hello"
        assert proxy.connections == 1
        assert proxy.accepted == 1
        assert proxy.bytes_upstream == 5
        assert proxy.bytes_downstream == 5
    wait_until(lambda: proxy.connections == 0, message="the proxy closes the link after the client left")
    assert proxy.accepted == 1


def test_address_and_port_are_stable_across_modes(proxy: FaultProxy) -> None:
    address = proxy.address
    assert address[0] == "127.0.0.1" and address[1] > 0
    steps: list[tuple[str, dict[str, float]]] = [
        ("refuse", {}),
        ("deaf", {}),
        ("pass", {}),
        ("flap", {"period": 0.05}),
        ("pass", {}),
    ]
    for mode, params in steps:
        proxy.set_mode(mode, **params)
        assert proxy.address == address
    with connect(proxy) as client:
        assert round_trip(client, b"same port") == b"same port"


def test_restart_reuses_the_port(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.address).start()
    try:
        port = proxy.port
        proxy.stop()
        proxy.stop()  # idempotent
        assert not proxy.running
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        proxy.start()
        assert proxy.port == port
        with connect(proxy) as client:
            assert round_trip(client, b"again") == b"again"
    finally:
        proxy.stop()


def test_stop_resets_open_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"x") == b"x"
        proxy.stop()
        with pytest.raises(ConnectionResetError):
            client.recv(1)
    assert proxy.connections == 0


def test_upstream_down_resets_the_client(echo: EchoServer) -> None:
    with FaultProxy(echo.address) as proxy:
        echo.stop()
        with connect(proxy) as client, pytest.raises(ConnectionResetError):
            client.recv(1)
        wait_until(lambda: proxy.connections == 0)


def test_no_fd_or_greenlet_leak_after_stop(echo: EchoServer) -> None:
    def exercise(proxy: FaultProxy) -> None:
        clients = [connect(proxy) for _ in range(3)]
        for client in clients:
            assert round_trip(client, b"warm") == b"warm"
        for mode, params in (
            ("delay", {"ms": 1}),
            ("stall", {}),
            ("half_close", {}),
            ("deaf", {}),
            ("refuse", {}),
            ("flap", {"period": 0.01}),
            ("truncate", {"n": 0}),
            ("pass", {}),
        ):
            proxy.set_mode(mode, **params)
        late = connect(proxy)
        assert round_trip(late, b"late") == b"late"
        clients.append(late)
        proxy.set_mode("stall")
        late.sendall(b"held")  # a relay holds this when the proxy stops
        for client in clients[:2]:
            client.close()

    # warm up the hub, the resolver and the module caches first
    with FaultProxy(echo.address) as proxy:
        exercise(proxy)
    wait_until(lambda: echo.connections == 0)
    fds, greenlets = fd_count(), greenlet_count()
    proxy = FaultProxy(echo.address).start()
    exercise(proxy)
    proxy.stop()
    wait_until(lambda: echo.connections == 0, message="the echo server saw every upstream connection close")
    wait_until(lambda: fd_count() <= fds, message=f"fd count back to {fds}")
    wait_until(lambda: greenlet_count() <= greenlets, message=f"greenlet count back to {greenlets}")


# -- timing modes ------------------------------------------------------------------------------


def test_delay_applies_to_each_chunk_each_way(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"before") == b"before"
        proxy.set_mode("delay", ms=50)
        started = time.monotonic()
        assert round_trip(client, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.09  # 50 ms each way, within timer resolution
        proxy.set_mode("pass")
        assert round_trip(client, b"after") == b"after"


def test_delay_is_latency_chunks_overlap_and_keep_their_order(proxy: FaultProxy) -> None:
    """Chunks sent 50 ms apart under a 500 ms delay arrive about 500 ms later, in order, EOF last."""
    proxy.set_mode("delay", ms=500)
    with connect(proxy, timeout=10) as client:
        started = time.monotonic()
        for number in range(3):
            client.sendall(b"chunk %d;" % number)
            gevent.sleep(0.05)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            data = client.recv(1024)
            if not data:
                break
            received += data
        elapsed = time.monotonic() - started
    assert received == b"chunk 0;chunk 1;chunk 2;"  # the echo server closes after the client's EOF
    assert elapsed >= 0.5 * 2 * 0.95
    assert elapsed < 3 * 0.5 * 2  # one after the other would take 3 s: they overlapped


def test_drip_throttles_but_delivers_everything(proxy: FaultProxy) -> None:
    proxy.set_mode("drip", bytes_per_sec=4000)
    payload = bytes(range(256)) * 2
    with connect(proxy) as client:
        started = time.monotonic()
        assert round_trip(client, payload) == payload
        # The two directions overlap, so the bound is one direction's: 512 bytes
        # at 4000 B/s, less the last piece (80 bytes), which is sent without a wait.
        assert time.monotonic() - started >= (512 - 80) / 4000 * 0.95


def test_stall_holds_data_until_the_mode_changes(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"ok") == b"ok"
        proxy.set_mode("stall")
        client.sendall(b"held")
        client.settimeout(0.2)
        with pytest.raises(socket.timeout):
            client.recv(10)
        assert proxy.connections == 1
        proxy.set_mode("pass")
        client.settimeout(REPLY_TIMEOUT)
        assert read_exactly(client, 4) == b"held"


def test_stall_applies_to_new_connections(proxy: FaultProxy) -> None:
    proxy.set_mode("stall")
    with connect(proxy) as client:
        client.sendall(b"new")
        client.settimeout(0.2)
        with pytest.raises(socket.timeout):
            client.recv(10)
        wait_until(lambda: proxy.accepted == 1)


def test_blackhole_drops_data_for_good(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"ok") == b"ok"
        proxy.set_mode("blackhole")
        client.sendall(b"lost")
        client.settimeout(0.2)
        with pytest.raises(socket.timeout):
            client.recv(10)
        proxy.set_mode("pass")
        client.settimeout(REPLY_TIMEOUT)
        assert round_trip(client, b"next") == b"next"  # "lost" never reached the server


# -- connection-breaking modes -----------------------------------------------------------------


def test_reset_breaks_open_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"ok") == b"ok"
        proxy.set_mode("reset")
        with pytest.raises(ConnectionResetError):
            client.recv(1)
    assert proxy.connections == 0


def test_reset_breaks_new_connections_after_accept(proxy: FaultProxy) -> None:
    proxy.set_mode("reset")
    with connect(proxy) as client, pytest.raises(ConnectionResetError):
        client.recv(1)
    assert proxy.accepted == 1
    proxy.set_mode("pass")
    with connect(proxy) as client:
        assert round_trip(client, b"back") == b"back"


def test_reset_all_keeps_the_mode(proxy: FaultProxy) -> None:
    first, second = connect(proxy), connect(proxy)
    with first, second:
        for client in (first, second):
            assert round_trip(client, b"ok") == b"ok"
        proxy.reset_all()
        assert proxy.connections == 0
        for client in (first, second):
            with pytest.raises(ConnectionResetError):
                client.recv(1)
    assert proxy.mode == "pass"
    with connect(proxy) as client:
        assert round_trip(client, b"fresh") == b"fresh"


def test_half_close_sends_eof_to_the_client(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"ok") == b"ok"
        proxy.set_mode("half_close")
        assert client.recv(10) == b""
        client.sendall(b"still sent")  # the client's direction stays open
        wait_until(lambda: proxy.bytes_upstream == 2 + 10)
        assert proxy.bytes_downstream == 2


def test_half_close_applies_to_new_connections(proxy: FaultProxy) -> None:
    proxy.set_mode("half_close")
    with connect(proxy) as client:
        assert client.recv(10) == b""


def test_truncate_closes_after_n_response_bytes(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"handshake") == b"handshake"
        proxy.set_mode("truncate", n=4)  # counted from now
        client.sendall(b"0123456789")
        assert read_to_eof(client) == b"0123"
    wait_until(lambda: proxy.connections == 0)


def test_truncate_counts_across_chunks_on_new_connections(proxy: FaultProxy) -> None:
    proxy.set_mode("truncate", n=7)
    with connect(proxy) as client:
        assert round_trip(client, b"abcd") == b"abcd"
        client.sendall(b"efghij")
        assert read_to_eof(client) == b"efg"


def test_truncate_zero_closes_at_once(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"ok") == b"ok"
        proxy.set_mode("truncate", n=0)
        assert client.recv(10) == b""


def test_corrupt_flips_exactly_byte_n(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"handshake") == b"handshake"
        proxy.set_mode("corrupt", n=3)  # counted from now
        assert round_trip(client, b"ab") == b"ab"
        assert round_trip(client, b"cdef") == b"c" + bytes([ord("d") ^ 0xFF]) + b"ef"
        assert round_trip(client, b"ghij") == b"ghij"  # flipped once


# -- listening modes ---------------------------------------------------------------------------


def test_refuse_stops_listening_but_keeps_open_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        proxy.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        assert round_trip(client, b"kept") == b"kept"
        proxy.set_mode("pass")
        with connect(proxy) as second:
            assert round_trip(second, b"listening") == b"listening"


def test_deaf_makes_connect_hang_until_the_client_timeout(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        proxy.set_mode("deaf")
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            connect(proxy, timeout=0.2)
        assert time.monotonic() - started >= 0.19
        assert round_trip(client, b"kept") == b"kept"
    accepted = proxy.accepted
    proxy.set_mode("pass")
    with connect(proxy) as client:
        assert round_trip(client, b"accepting") == b"accepting"
    assert proxy.accepted == accepted + 1  # the backlog fillers were never relayed


def test_flap_alternates_refuse_and_pass(proxy: FaultProxy) -> None:
    def outcome() -> str:
        try:
            with connect(proxy, timeout=1.0) as client:
                # a successful probe has a working relay behind it
                return "pass" if round_trip(client, b"?") == b"?" else "bad"
        except ConnectionRefusedError:
            return "refuse"
        except ConnectionResetError:
            return "refuse"  # accepted just before the listener closed

    proxy.set_mode("flap", period=0.1)
    assert outcome() == "refuse"  # flap starts refusing
    seen = ["refuse"]
    for wanted in ("pass", "refuse", "pass"):

        def sees(wanted: str = wanted) -> bool:
            return outcome() == wanted

        wait_until(sees, timeout=2.0, interval=0.01, message=f"a connect that sees {wanted!r}")
        seen.append(wanted)
    proxy.set_mode("pass")
    for _ in range(3):
        assert outcome() == "pass"


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "params", "named"),
    [
        ("teleport", {}, "teleport"),
        ("delay", {}, "ms"),
        ("delay", {"ms": -1}, "ms"),
        ("delay", {"ms": float("nan")}, "ms"),
        ("drip", {"bytes_per_sec": 0}, "bytes_per_sec"),
        ("truncate", {"n": 1.5}, "n"),
        ("corrupt", {"n": True}, "n"),
        ("flap", {"period": float("inf")}, "period"),
        ("pass", {"ms": 5}, "ms"),
    ],
)
def test_bad_modes_raise_configuration_error(proxy: FaultProxy, mode: str, params: dict[str, float],
                                             named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        proxy.set_mode(mode, **params)
    assert proxy.mode == "pass"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"upstream": "127.0.0.1:80"}, "upstream"),
        ({"upstream": ("127.0.0.1", 0)}, "upstream"),
        ({"upstream": ("127.0.0.1", 1), "port": 70000}, "port"),
        ({"upstream": ("127.0.0.1", 1), "host": ""}, "host"),
        ({"upstream": ("127.0.0.1", 1), "connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_bad_arguments_raise_configuration_error(kwargs: dict[str, object], named: str) -> None:
    fds = fd_count()
    with pytest.raises(ConfigurationError, match=named):
        FaultProxy(**kwargs)  # type: ignore[arg-type]
    assert fd_count() == fds


# -- more lifecycle ------------------------------------------------------------------------------


def test_mode_set_before_start_applies_at_start(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.address)
    proxy.set_mode("refuse")
    with proxy:
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        proxy.set_mode("pass")
        with connect(proxy) as client:
            assert round_trip(client, b"up") == b"up"


def test_reset_while_stalled_ends_the_held_relays(proxy: FaultProxy) -> None:
    with connect(proxy) as client:
        assert round_trip(client, b"ok") == b"ok"
        proxy.set_mode("stall")
        client.sendall(b"held")
        gevent.sleep(0.01)  # let the relay pick the bytes up (either way the reset must end it)
        greenlets = greenlet_count()
        proxy.set_mode("reset")
        with pytest.raises(ConnectionResetError):
            client.recv(1)
    assert proxy.connections == 0
    # the link's two relays, and the echo server's handler behind it
    wait_until(lambda: greenlet_count() <= greenlets - 3, message="the link's greenlets ended")


def test_ipv6_loopback() -> None:
    try:
        server = EchoServer("::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        with FaultProxy(server.address, host="::1") as proxy:
            assert proxy.address[0] == "::1"
            with gsocket.create_connection(proxy.address, timeout=REPLY_TIMEOUT) as client:
                assert round_trip(client, b"six") == b"six"
            proxy.set_mode("deaf")
            with pytest.raises(socket.timeout):
                gsocket.create_connection(proxy.address, timeout=0.2)
    finally:
        server.stop()

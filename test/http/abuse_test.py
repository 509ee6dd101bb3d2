"""The HTTP server must not hurt the broker, whatever its clients do: one that sends its request
a byte at a time does not hold up the broker's shutdown, and a crowd of idle connections does
not use up the descriptors the broker's clients need.

Run: PUBSUBX_SERVER=build/pubsubx-server /usr/bin/python3 test/http/abuse_test.py"""

import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server  # noqa: E402


def drip(port, stop):
    """A request whose header lines come one every 0.3 s, for as long as `stop` is not set."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        while not stop.wait(0.3):
            try:
                connection.sendall(b"X-Slow: y\r\n")
            except OSError:
                return  # the server closed it: fine
    finally:
        connection.close()


def test_slow_client_does_not_hold_up_shutdown():
    server = Server("0", "--http-port", "0")
    stop = threading.Event()
    dripper = threading.Thread(target=drip, args=(server.http_port, stop), daemon=True)
    dripper.start()
    time.sleep(0.5)  # the request is being read by a worker
    try:
        started = time.monotonic()
        server.process.send_signal(15)
        code = server.wait_exit(timeout=8)
        took = time.monotonic() - started
    finally:
        stop.set()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    dripper.join(timeout=5)
    assert code == 0, (code, server.lines)
    assert took < 5, f"the server took {took:.1f} s to stop after SIGTERM"
    assert any("HTTP: a connection still busy 1.5 s after the stop" in line
               for line in server.lines), server.lines


def test_idle_keep_alive_connection_ends_with_the_stop():
    """A browser showing the status page keeps its connection open between requests: the stop
    waits for it (it ends within a second), without a warning."""
    server = Server("0", "--http-port", "0")
    connection = socket.create_connection(("127.0.0.1", server.http_port), timeout=5)
    try:
        connection.sendall(b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 200"), "no answer"
        started = time.monotonic()
        code = server.stop()
        took = time.monotonic() - started
    finally:
        connection.close()
    assert code == 0, (code, server.lines)
    assert took < 2.5, f"the server took {took:.1f} s to stop"
    assert not any("WARNING: HTTP" in line for line in server.lines), server.lines


def test_idle_connections_leave_the_broker_its_descriptors():
    def small_descriptor_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    server = Server("0", "--http-port", "0", preexec_fn=small_descriptor_limit)
    idle = []
    clients = []
    try:
        # 256 descriptors, less 32 for the server's own and 14 for the HTTP server's.
        server.wait_for_line(r"--max-connections lowered from 65536 to 210:")
        # Each connection waits until the server accepted it, as a crowd of clients would;
        # once the HTTP server takes no more (it holds a bounded number), they time out.
        timeouts = 0
        while len(idle) < 240 and timeouts < 5:
            connection = socket.socket()
            connection.settimeout(1)
            try:
                connection.connect(("127.0.0.1", server.http_port))
            except socket.timeout:
                timeouts += 1
            idle.append(connection)
        time.sleep(0.5)
        for number in range(20):
            clients.append(Client(server.port, f"client-{number}"))  # each asserts its OK
    finally:
        for connection in idle + [client.socket for client in clients]:
            connection.close()
        code = server.stop()
    assert code == 0, (code, server.lines)


def main():
    test_slow_client_does_not_hold_up_shutdown()
    test_idle_keep_alive_connection_ends_with_the_stop()
    test_idle_connections_leave_the_broker_its_descriptors()
    print("ok")


if __name__ == "__main__":
    main()

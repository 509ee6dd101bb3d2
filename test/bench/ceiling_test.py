"""pubsubx-ceiling moves exactly the bytes a broker would: the CONNECT answer, then every PUBLISH
as `<topic> <data>` to every subscriber, in order, whatever the reads cut the frames into, in
both fan-out modes; SIGTERM ends it with 0 and a bad option with 2.

Run: PUBSUBX_CEILING=build/pubsubx-ceiling /usr/bin/python3 test/bench/ceiling_test.py"""

import os
import re
import select
import signal
import socket
import subprocess
import time

DELIMITER = b"\n\nx"
CONNECT_ANSWER = b"OK: Conn accepted" + DELIMITER
TIMEOUT = 3  # seconds for any one wait
LARGE = bytes(ord("a") + i % 26 for i in range(64 * 1024))


def ceiling_path():
    path = os.environ.get("PUBSUBX_CEILING")
    if not path:
        raise SystemExit("PUBSUBX_CEILING must name the pubsubx-ceiling to test")
    return path


class Ceiling:
    """pubsubx-ceiling on an ephemeral port; killed by its PID if the test fails."""

    def __init__(self, mode):
        self.mode = mode
        # Its stderr goes to the test's, so that meson's log shows what it reported.
        self.process = subprocess.Popen([ceiling_path(), "0", "--mode", mode],
                                        stdout=subprocess.PIPE)
        line = self._first_line()
        match = re.fullmatch(rf"pubsubx-ceiling listening on 127\.0\.0\.1:(\d+) \(mode {mode}\)",
                             line)
        assert match, line
        self.port = int(match.group(1))

    def _first_line(self):
        line = b""
        deadline = time.monotonic() + TIMEOUT
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(remaining, 0))
            assert ready, f"no listening line within {TIMEOUT} s: {line!r}"
            chunk = os.read(self.process.stdout.fileno(), 4096)
            assert chunk, f"pubsubx-ceiling ended before its listening line: {line!r}"
            line += chunk
        return line.decode().rstrip("\n")

    def stop(self):
        """SIGTERM, and its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT)

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Client:
    """A connection that checks the bytes it receives exactly, not frame by frame."""

    def __init__(self, port, name, receive_buffer=None):
        self.socket = socket.socket()
        if receive_buffer:
            # Set before connecting, so that the TCP window stays this small.
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.settimeout(TIMEOUT)
        self.socket.connect(("127.0.0.1", port))
        self.send(b"CONNECT " + name.encode() + DELIMITER)
        self.expect(CONNECT_ANSWER)

    def send(self, data):
        self.socket.sendall(data)

    def publish(self, topic, data):
        self.send(b"PUBLISH " + topic + b" " + data + DELIMITER)

    def expect(self, expected):
        received = bytearray()
        while len(received) < len(expected):
            chunk = self.socket.recv(min(len(expected) - len(received), 1 << 20))
            assert chunk, f"connection closed after {len(received)} of {len(expected)} bytes"
            received += chunk
        if received != expected:
            at = next(i for i, (a, b) in enumerate(zip(received, expected)) if a != b)
            raise AssertionError(f"bytes differ from byte {at}: {bytes(received[at:at + 80])!r}"
                                 f" instead of {expected[at:at + 80]!r}")

    def expect_nothing(self, seconds=0.1):
        self.socket.settimeout(seconds)
        try:
            data = self.socket.recv(65536)
        except socket.timeout:
            return
        finally:
            self.socket.settimeout(TIMEOUT)
        raise AssertionError(f"unexpected bytes: {data[:200]!r}")

    def expect_closed(self):
        assert self.socket.recv(65536) == b"", "the connection stayed open"

    def close(self):
        self.socket.close()


def delivery(topic, data):
    return topic + b" " + data + DELIMITER


def subscriber(port, name, receive_buffer=None):
    """A subscriber whose SUBSCRIBE was handled: its own probe, published after it, came back."""
    client = Client(port, name, receive_buffer)
    client.send(b"SUBSCRIBE t" + DELIMITER + b"PUBLISH t probe-" + name.encode() + DELIMITER)
    client.expect(delivery(b"t", b"probe-" + name.encode()))
    return client


def test_one_subscriber(port):
    sub = subscriber(port, "sub")
    pub = Client(port, "pub")
    pub.publish(b"t", b"hello")
    sub.expect(delivery(b"t", b"hello"))
    # Split inside the data, then inside the delimiter: nothing goes out until the frame ends.
    for first, second in [(b"PUBLISH t spl", b"it data" + DELIMITER),
                          (b"PUBLISH t split delimiter\n", b"\nx")]:
        pub.send(first)
        sub.expect_nothing()
        pub.send(second)
        sub.expect(delivery(b"t", (first + second)[len(b"PUBLISH t "):-len(DELIMITER)]))
    expected = b""
    pub.publish(b"t", b"data with  spaces, one at the end ")
    expected += delivery(b"t", b"data with  spaces, one at the end ")
    pub.publish(b"t", LARGE)
    expected += delivery(b"t", LARGE)
    # Several frames in one send, an empty frame and frames a ceiling does not act on.
    pub.send(b"PUBLISH other a" + DELIMITER + DELIMITER + b"UNSUBSCRIBE t" + DELIMITER +
             b"PUBLISH t b" + DELIMITER)
    expected += delivery(b"other", b"a") + delivery(b"t", b"b")
    # As the broker: no data field is delivered as empty data after a space, and an empty
    # topic ("PUBLISH  x y") is not acted on (found in review: the ceiling sent "t" and " x y").
    pub.send(b"PUBLISH t" + DELIMITER + b"PUBLISH  x y" + DELIMITER + b"PUBLISH t " + DELIMITER +
             b"PUBLISH t end" + DELIMITER)
    expected += delivery(b"t", b"") + delivery(b"t", b"") + delivery(b"t", b"end")

    sub.expect(expected)
    sub.expect_nothing()
    pub.send(b"DISCONNECT" + DELIMITER)
    pub.expect_closed()
    sub.send(b"DISCONNECT" + DELIMITER)
    sub.expect_closed()


def test_two_subscribers(port):
    first = subscriber(port, "first")
    second = subscriber(port, "second")
    first.expect(delivery(b"t", b"probe-second"))  # every subscriber gets every message
    pub = Client(port, "pub")
    messages = [b"one", LARGE, b"three with spaces"]
    for data in messages:
        pub.publish(b"t", data)
    expected = b"".join(delivery(b"t", data) for data in messages)
    first.expect(expected)
    second.expect(expected)
    for client in (first, second, pub):
        client.close()


def test_slow_subscriber(port):
    """A subscriber that does not read holds up no other and loses nothing: far more than the
    sockets hold waits in the ceiling, and goes out as the subscriber reads again."""
    slow = subscriber(port, "slow", receive_buffer=64 * 1024)
    fast = subscriber(port, "fast")
    slow.expect(delivery(b"t", b"probe-fast"))
    pub = Client(port, "pub")
    messages = [b"%06d" % number + LARGE for number in range(192)]  # 12 MiB
    pub.send(b"".join(b"PUBLISH t " + data + DELIMITER for data in messages))
    expected = b"".join(delivery(b"t", data) for data in messages)
    fast.expect(expected)
    slow.expect(expected)
    for client in (slow, fast, pub):
        client.close()


def test_first_frame_must_be_connect(port):
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client.sendall(b"SUBSCRIBE t" + DELIMITER)
    assert client.recv(65536) == b"", "a connection without CONNECT stayed open"
    client.close()


def test_mode(mode):
    ceiling = Ceiling(mode)
    try:
        test_one_subscriber(ceiling.port)
        test_two_subscribers(ceiling.port)
        test_slow_subscriber(ceiling.port)
        test_first_frame_must_be_connect(ceiling.port)
        code = ceiling.stop()
        assert code == 0, f"exit code {code} after SIGTERM"
    finally:
        ceiling.kill()


def test_bad_mode_exits_2():
    result = subprocess.run([ceiling_path(), "0", "--mode", "fast"], capture_output=True,
                            timeout=TIMEOUT)
    assert result.returncode == 2, result
    assert b"--mode" in result.stderr, result.stderr


def main():
    for mode in ("shared", "copy"):
        test_mode(mode)
    test_bad_mode_exits_2()
    print("ok")


if __name__ == "__main__":
    main()

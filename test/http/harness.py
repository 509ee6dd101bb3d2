"""What the HTTP tests share: a real pubsubx-server on ephemeral ports, clients that speak the
wire protocol over plain sockets, and HTTP requests to --http-port."""

import http.client
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time

DELIMITER = b"\n\nx"


def server_path():
    path = os.environ.get("PUBSUBX_SERVER")
    if not path:
        raise SystemExit("PUBSUBX_SERVER must name the pubsubx-server to test")
    return path


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")

class Server:
    """pubsubx-server with its log read line by line on a thread (never blocking it)."""

    def __init__(self, *args, wait_for_http=True, preexec_fn=None):
        self.args = [server_path(), *args]
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=preexec_fn)
        self.lines = []
        self._queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = None
        self.http_port = None
        if wait_for_http:
            try:
                self.port = int(self.wait_for_line(
                    r"Server started, listening on 127\.0\.0\.1:(\d+)").group(1))
                self.http_port = int(self.wait_for_line(
                    r"^INFO: HTTP listening on [^ ]+:(\d+)$").group(1))
            except BaseException:
                self.process.kill()  # a server that did not start as expected is not left behind
                self.process.wait()
                raise

    def _read(self):
        # Each line starts with its RFC 3339 timestamp; the tests match what follows it.
        for line in self.process.stdout:
            self._queue.put(_TIMESTAMP.sub("", line.rstrip("\n"), count=1))
        self._queue.put(None)

    def wait_for_line(self, pattern, timeout=10):
        """The first line from now on (or already read) that matches `pattern`."""
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return match
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; log so far: {self.lines}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"server ended without a line matching {pattern!r}; log: {self.lines}")
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def wait_exit(self, timeout=10):
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    def stop(self):
        """SIGTERM, then the exit code; SIGKILL if it does not end."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.wait_exit(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the server did not stop within 10 s of SIGTERM")

    def get(self, path, method="GET"):
        """(status, headers as a dict with lower-case names, body bytes)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, headers, body
        finally:
            connection.close()


class Client:
    """One broker connection speaking the wire protocol (docs/protocol.md)."""

    def __init__(self, port, name):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.sent = 0
        self.received = 0
        self.send(f"CONNECT {name}".encode())
        reply = self.frame()
        assert reply == b"OK: Conn accepted", reply

    def send(self, *frames):
        data = b"".join(frame + DELIMITER for frame in frames)
        self.socket.sendall(data)
        self.sent += len(data)

    def frame(self):
        while DELIMITER not in self.buffer:
            chunk = self.socket.recv(65536)
            if not chunk:
                raise AssertionError("the server closed the connection")
            self.buffer += chunk
        frame, self.buffer = self.buffer.split(DELIMITER, 1)
        self.received += len(frame) + len(DELIMITER)
        return frame

    def close(self):
        self.socket.close()

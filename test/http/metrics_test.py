"""/metrics, /healthz and the HTTP options of pubsubx-server, against known traffic. The
exposition is read by the Prometheus project's own parser (Debian's python3-prometheus-client),
and every value the traffic determines is checked exactly.

Run: PUBSUBX_SERVER=build/pubsubx-server /usr/bin/python3 test/http/metrics_test.py"""

import json
import os
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server  # noqa: E402

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics(server):
    """{(sample name, ((label, value), ...)): value}, every family checked on the way."""
    status, headers, body = server.get("/metrics")
    assert status == 200, status
    assert headers["content-type"] == PROMETHEUS_TYPE, headers
    samples = {}
    families = set()
    for family in text_string_to_metric_families(body.decode("utf-8")):
        assert family.name not in families, f"family {family.name} given twice"
        families.add(family.name)
        assert family.name.startswith("pubsubx_"), family.name
        assert family.type in ("counter", "gauge"), (family.name, family.type)
        assert family.documentation, f"{family.name} has no HELP"
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, key
            samples[key] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def next_snapshot(server):
    """The figures of a snapshot the event loop took after this call (one a second)."""
    before = value(metrics(server), "pubsubx_uptime_seconds")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.1)
        samples = metrics(server)
        if value(samples, "pubsubx_uptime_seconds") > before:
            return samples
    raise AssertionError("no new snapshot within 10 s: the event loop stopped publishing")


def check(samples, **expected):
    """Gauges and counters by their sample names (counters with _total)."""
    wrong = {name: (value(samples, name), want) for name, want in expected.items()
             if value(samples, name) != want}
    assert not wrong, f"(found, expected): {wrong}"


def test_endpoints(server):
    status, headers, body = server.get("/healthz")
    assert (status, body) == (200, b"ok\n"), (status, body)
    assert headers["content-type"].startswith("text/plain"), headers

    status, headers, body = server.get("/metrics", method="HEAD")
    assert status == 200 and body == b"", (status, body)
    assert headers["content-type"] == PROMETHEUS_TYPE, headers
    assert int(headers["content-length"]) > 1000, headers

    status, headers, body = server.get("/")
    assert status == 200, status
    assert headers["content-type"] == "text/html; charset=utf-8", headers
    assert b'id="chart-messages"' in body and b"/status.json" in body
    # Self-contained: the page loads nothing from elsewhere.
    for reference in (b"http://", b"https://", b"src=", b"<link"):
        assert reference not in body, reference

    status, headers, body = server.get("/status.json")
    assert status == 200 and headers["content-type"] == "application/json", (status, headers)
    assert json.loads(body)["version"]

    for path in ("/nope", "/metrics/x", "/favicon.ico"):
        status, _, _ = server.get(path)
        assert status == 404, (path, status)
    status, headers, _ = server.get("/metrics", method="DELETE")
    assert status == 405 and headers["allow"] == "GET, HEAD", (status, headers)

    samples = metrics(server)
    version = [labels for (name, labels) in samples if name == "pubsubx_build_info"]
    assert len(version) == 1 and version[0][0][0] == "version", version
    assert value(samples, "pubsubx_build_info", version=version[0][0][1]) == 1
    start = value(samples, "pubsubx_start_time_seconds")
    assert abs(start - time.time()) < 60, start


def publish(publisher, payload, count, subscribers):
    """`count` messages on news, five at a time, each five read by the connected subscribers
    before the next (so that their 1000-byte queues never overflow)."""
    for start in range(0, count, 5):
        batch = min(5, count - start)
        publisher.send(*[f"PUBLISH news {payload}".encode()] * batch)
        for client in subscribers:
            for _ in range(batch):
                assert client.frame() == f"news {payload}".encode()


def test_traffic(server):
    """Known traffic, then exact figures."""
    count = 25
    payload = "p" * 92  # "news " + 92 bytes + the delimiter: 100-byte frames
    first = Client(server.port, "first")
    second = Client(server.port, "second")
    first.send(b"SUBSCRIBE news")
    second.send(b"SUBSCRIBE news")
    publisher = Client(server.port, "publisher")
    # A subscription is in place once the publisher's frames come after it: the SUBSCRIBEs
    # were read before, on their own connections; make sure by a round trip through the
    # broker (a frame to ourselves).
    publisher.send(b"SUBSCRIBE self")
    publisher.send(b"PUBLISH self ping")
    assert publisher.frame() == b"self ping"
    publisher.send(b"UNSUBSCRIBE self")
    for client in (first, second):
        client.send(b"SUBSCRIBE sync")
    publisher.send(b"PUBLISH sync go")
    for client in (first, second):
        assert client.frame() == b"sync go"
        client.send(b"UNSUBSCRIBE sync")
    base = next_snapshot(server)
    base_in = value(base, "pubsubx_messages_published_total")
    base_out = value(base, "pubsubx_messages_delivered_total")
    base_received = value(base, "pubsubx_received_bytes_total")
    base_sent = value(base, "pubsubx_sent_bytes_total")
    assert (base_in, base_out) == (2, 3), (base_in, base_out)

    publish(publisher, payload, count, (first, second))
    samples = next_snapshot(server)
    check(samples,
          pubsubx_messages_published_total=base_in + count,
          pubsubx_messages_delivered_total=base_out + 2 * count,
          pubsubx_received_bytes_total=base_received + count * (len(payload) + 16),
          pubsubx_sent_bytes_total=base_sent + 2 * count * 100,
          pubsubx_connections=3,
          pubsubx_clients=3,
          pubsubx_lost_clients=0,
          pubsubx_topics=1,
          pubsubx_subscriptions=2,
          pubsubx_queued_bytes=0,
          pubsubx_connections_accepted_total=3,
          pubsubx_clients_lost_total=0)
    for reason in ("queue_full", "total_queue_full", "connection_closed"):
        assert value(samples, "pubsubx_messages_dropped_total", reason=reason) == 0, reason
    # Everything the clients sent and received, to the byte.
    clients = (first, second, publisher)
    assert value(samples, "pubsubx_received_bytes_total") == sum(c.sent for c in clients)
    assert value(samples, "pubsubx_sent_bytes_total") == sum(c.received for c in clients)

    # An abrupt close: the client is lost, its subscription kept.
    second.close()
    deadline = time.monotonic() + 10
    while value(samples, "pubsubx_lost_clients") != 1 and time.monotonic() < deadline:
        samples = next_snapshot(server)
    check(samples,
          pubsubx_connections=2,
          pubsubx_clients=2,
          pubsubx_lost_clients=1,
          pubsubx_clients_lost_total=1,
          pubsubx_subscriptions=2,
          pubsubx_topics=1)

    # The lost client's queue holds --max-queue (1000 bytes): 10 frames of 100 bytes; of 25
    # more, the 15 oldest are dropped.
    publish(publisher, payload, count, (first,))
    samples = next_snapshot(server)
    check(samples,
          pubsubx_messages_published_total=base_in + 2 * count,
          pubsubx_messages_delivered_total=base_out + 4 * count,
          pubsubx_queued_bytes=1000)
    assert value(samples, "pubsubx_messages_dropped_total", reason="queue_full") == 15
    assert value(samples, "pubsubx_messages_dropped_total", reason="total_queue_full") == 0
    for client in (first, publisher):
        client.close()


def test_port_in_use(port):
    """A second broker on the same HTTP port: the error line and exit code 1."""
    other = Server("0", "--http-port", str(port), wait_for_http=False)
    try:
        code = other.wait_exit()
    finally:
        if other.process.poll() is None:
            other.process.kill()
            other.process.wait()
    assert code == 1, (code, other.lines)
    wanted = f"ERROR: Cannot listen for HTTP on 127.0.0.1:{port}: Address already in use"
    assert wanted in other.lines, other.lines


def test_options():
    # Off by default: no line, no thread.
    plain = Server("0", wait_for_http=False)
    try:
        plain.wait_for_line(r"Server started")
        assert len(os.listdir(f"/proc/{plain.process.pid}/task")) == 1
    finally:
        assert plain.stop() == 0
    assert not any("HTTP" in line for line in plain.lines), plain.lines

    # Reachable from elsewhere: said loudly.
    wide = Server("0", "--http-port", "0", "--http-bind", "0.0.0.0")
    try:
        wide.wait_for_line(r"^WARNING: --http-bind 0\.0\.0\.0: .*without authentication")
        assert wide.get("/healthz")[0] == 200
    finally:
        assert wide.stop() == 0

    for args in (["--http-bind", "127.0.0.1"], ["--http-port", "0", "--http-bind", "localhost"],
                 ["--http-port", "65536"]):
        bad = Server("0", *args, wait_for_http=False)
        assert bad.wait_exit() == 2, (args, bad.lines)


def main():
    server = Server("0", "--http-port", "0", "--max-queue", "1000")
    try:
        test_endpoints(server)
        test_traffic(server)
        test_port_in_use(server.http_port)
        status, _, _ = server.get("/healthz")
        assert status == 200
    finally:
        code = server.stop()
    assert code == 0, (code, server.lines)
    assert any(line.startswith("INFO: Shutting down") for line in server.lines), server.lines
    test_options()
    print("ok")


if __name__ == "__main__":
    main()

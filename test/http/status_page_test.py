"""The status page (/) in headless Chromium, driven over the W3C WebDriver protocol by
chromedriver (Debian's chromium and chromium-driver; no Selenium): the figures appear and
change while traffic runs, the charts get points, and a screenshot is taken.

Run: PUBSUBX_SERVER=build/pubsubx-server /usr/bin/python3 test/http/status_page_test.py
     [--screenshot FILE] [--traffic-seconds N]
(or PUBSUBX_STATUS_SCREENSHOT=FILE). Chromium missing is a failure, not a skip."""

import argparse
import base64
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FIGURES = ["version", "uptime", "connections", "clients", "lost", "topics", "subscriptions",
           "msgs-in", "msgs-out", "msgs-in-total", "msgs-out-total", "bytes-in", "bytes-out",
           "queued", "dropped", "status"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def using_profile(profile):
    """Processes whose command line names our fresh profile directory: Chromium's helpers
    that left chromedriver's tree (crashpad forks twice)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if profile.encode() in cmdline.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def descendants(pid):
    """Every process below `pid`, found by their parent ids in /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


class WebDriver:
    """chromedriver on a free port, and one session of headless Chromium."""

    def __init__(self):
        for program in (CHROMIUM, CHROMEDRIVER):
            if not os.access(program, os.X_OK):
                raise AssertionError(f"{program} is missing: apt-get install chromium "
                                     "chromium-driver")
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="pubsubx-chromium-")
        self.process = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.session = None
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.call("GET", "/status")["ready"]:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError("chromedriver did not become ready")
            time.sleep(0.1)
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         f"--user-data-dir={self.profile}", "--window-size=1280,900"],
            },
        }}}
        self.session = self.call("POST", "/session", capabilities)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"WebDriver {method} {path}: {error.read()[:500]!r}")

    def command(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url):
        self.command("POST", "/url", {"url": url})

    def script(self, source, *args):
        return self.command("POST", "/execute/sync", {"script": source, "args": list(args)})

    def screenshot(self):
        return base64.b64decode(self.command("GET", "/screenshot"))

    def quit(self):
        """Ends the session, then chromedriver and whatever Chromium left, by PID."""
        try:
            if self.session is not None and self.process.poll() is None:
                self.call("DELETE", f"/session/{self.session}")
        except (AssertionError, OSError, urllib.error.URLError):
            pass
        left = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in set(left + using_profile(self.profile)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Traffic:
    """A publisher on `news` with two subscribers reading on their own threads, at a rate that
    changes over time (so the charts have a shape), until stop()."""

    def __init__(self, port):
        self.subscribers = [Client(port, f"reader-{i}") for i in range(2)]
        for client in self.subscribers:
            client.send(b"SUBSCRIBE news")
        self.idle = Client(port, "watcher")  # connected, subscribed elsewhere
        self.idle.send(b"SUBSCRIBE alerts/#")
        self.publisher = Client(port, "publisher")
        self.running = True
        self.errors = []
        self.threads = [threading.Thread(target=self._read, args=(c,), daemon=True)
                        for c in self.subscribers]
        self.threads.append(threading.Thread(target=self._publish, daemon=True))
        for thread in self.threads:
            thread.start()

    def _read(self, client):
        try:
            while self.running:
                client.frame()
        except Exception as error:  # noqa: BLE001 (reported by stop)
            if self.running:
                self.errors.append(error)

    def _publish(self):
        started = time.monotonic()
        sequence = 0
        try:
            while self.running:
                elapsed = time.monotonic() - started
                per_second = 400 + 250 * math.sin(elapsed / 9) + 120 * math.sin(elapsed / 2.3)
                batch = max(1, int(per_second / 20))
                frames = []
                for _ in range(batch):
                    sequence += 1
                    frames.append(f"PUBLISH news tick {sequence} {'x' * (sequence % 200)}"
                                  .encode())
                self.publisher.send(*frames)
                time.sleep(0.05)
        except Exception as error:  # noqa: BLE001
            self.errors.append(error)

    def stop(self):
        self.running = False
        for client in [*self.subscribers, self.publisher, self.idle]:
            try:
                client.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()
        for thread in self.threads:
            thread.join(timeout=5)
        assert not self.errors, self.errors


def read_figures(driver):
    return driver.script(
        "const out = {};"
        "for (const id of arguments[0]) out[id] = document.getElementById('v-' + id).textContent;"
        "out.points = Number(document.getElementById('chart-messages').dataset.points);"
        "out.byte_points = Number(document.getElementById('chart-bytes').dataset.points);"
        "return out;", FIGURES)


def wait_for(driver, condition, what, timeout=15):
    deadline = time.monotonic() + timeout
    figures = read_figures(driver)
    while not condition(figures):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; the page shows {figures}")
        time.sleep(0.2)
        figures = read_figures(driver)
    return figures


def number(text):
    return float(text.replace(",", "").split()[0])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", default=os.environ.get("PUBSUBX_STATUS_SCREENSHOT"))
    parser.add_argument("--traffic-seconds", type=float, default=4)
    options = parser.parse_args()

    server = driver = traffic = None
    try:
        server = Server("0", "--http-port", "0")
        driver = WebDriver()
        driver.go(f"http://127.0.0.1:{server.http_port}/")
        assert driver.command("GET", "/title") == "PubSubX status"
        idle = wait_for(driver, lambda f: f["status"] == "live", "the page polls /status.json")
        assert idle["connections"] == "0" and idle["clients"] == "0", idle
        assert idle["msgs-in-total"] == "0", idle
        assert idle["version"] == server_version(server), idle

        traffic = Traffic(server.port)
        first = wait_for(driver, lambda f: f["clients"] == "4" and number(f["msgs-in-total"]) > 0,
                         "the clients and their first messages appear")
        assert first["connections"] == "4" and first["subscriptions"] == "3", first
        assert first["topics"] == "2", first
        later = wait_for(driver, lambda f: number(f["msgs-in-total"]) > number(first["msgs-in-total"])
                         and number(f["msgs-out-total"]) > number(first["msgs-out-total"])
                         and number(f["msgs-in"]) > 0 and number(f["msgs-out"]) > 0
                         and f["points"] >= 3 and f["byte_points"] >= 3,
                         "the figures change while traffic runs")
        # Two subscribers: out is twice in, over the whole run.
        assert number(later["msgs-out-total"]) <= 2 * number(later["msgs-in-total"]), later
        deadline = time.monotonic() + options.traffic_seconds
        while time.monotonic() < deadline:
            time.sleep(0.5)
        if options.screenshot:
            png = driver.screenshot()
            assert png.startswith(b"\x89PNG\r\n\x1a\n"), png[:16]
            with open(options.screenshot, "wb") as out:
                out.write(png)
            print(f"screenshot: {options.screenshot} ({len(png)} bytes)")
        traffic.stop()
        traffic = None
        # The readers' connections ended without DISCONNECT: lost clients, shown as such.
        wait_for(driver, lambda f: f["lost"] == "4" and f["clients"] == "0"
                 and f["connections"] == "0", "the lost clients appear")
        print("ok")
    finally:
        if traffic is not None:
            traffic.running = False
        if driver is not None:
            driver.quit()
        if server is not None:
            code = server.stop()
            assert code == 0, (code, server.lines)


def server_version(server):
    import urllib.request as request
    with request.urlopen(f"http://127.0.0.1:{server.http_port}/status.json", timeout=10) as r:
        return json.loads(r.read())["version"]


if __name__ == "__main__":
    main()

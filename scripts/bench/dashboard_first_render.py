#!/usr/bin/env python3
"""Measures the DOIN dashboard's first render in headless Chromium, in real time.

Usage: dashboard_first_render.py CHROMIUM URL [RUNS]

Drives Chromium over the DevTools protocol (standard library only: a minimal WebSocket
client), loads URL RUNS times (default 5) in a fresh tab each time, and reads
`data-first-render-ms` from <html>: the page's `performance.now()` (milliseconds since the
navigation started) when its first full render was painted. Virtual time (the
`--virtual-time-budget` that the browser test uses) is not used here: it stops the clock
while requests are in flight, which would hide exactly what this measures.

Prints one line per run and a summary; exits non-zero on a console error, an exception in
the page, or a page that never finishes its first render.
"""

import base64
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

PAGE_TIMEOUT_S = 20


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: text frames, client masking."""

    def __init__(self, url):
        assert url.startswith("ws://"), url
        host_port, path = url[5:].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=PAGE_TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head!r}")

    def send(self, text):
        data = text.encode()
        header = bytearray([0x81])
        n = len(data)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode in (0x9, 0xA):  # ping / pong: not used by DevTools
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()


class DevTools:
    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == call_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    chromium, url = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    profile = tempfile.mkdtemp(prefix="doin-bench-chromium-")
    browser = subprocess.Popen(
        [
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--window-size=1280,1200",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if time.monotonic() > deadline:
                sys.exit("chromium did not open its DevTools port")
            time.sleep(0.05)
        time.sleep(0.1)
        port = open(port_file).read().split()[0]
        figures = []
        failed = False
        for run in range(runs):
            # A fresh tab per run: nothing of the previous page's state is reused.
            req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
            target = json.load(urllib.request.urlopen(req, timeout=PAGE_TIMEOUT_S))
            tab = DevTools(target["webSocketDebuggerUrl"])
            tab.call("Runtime.enable")
            tab.call("Page.enable")
            tab.call("Network.setCacheDisabled", cacheDisabled=run == 0)
            tab.call("Page.navigate", url=url)
            deadline = time.monotonic() + PAGE_TIMEOUT_S
            figure = None
            while figure is None:
                if time.monotonic() > deadline:
                    sys.exit(f"run {run + 1}: no first render within {PAGE_TIMEOUT_S} s")
                result = tab.call(
                    "Runtime.evaluate",
                    expression="document.documentElement.dataset.firstRenderMs || ''",
                    returnByValue=True,
                )
                value = result.get("result", {}).get("value", "")
                if value:
                    figure = float(value)
                else:
                    time.sleep(0.01)
            height = tab.call(
                "Runtime.evaluate",
                expression="document.getElementById('height').textContent",
                returnByValue=True,
            )["result"]["value"]
            problems = [
                e for e in tab.events
                if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Runtime.consoleAPICalled"
                    and e["params"].get("type") in ("error", "warning", "assert"))
            ]
            for p in problems:
                print(f"run {run + 1}: page problem: {json.dumps(p['params'])[:400]}")
                failed = True
            kind = "cold (cache disabled)" if run == 0 else "warm"
            print(f"run {run + 1}: first render {figure:.1f} ms, height shown {height} [{kind}]")
            figures.append(figure)
            urllib.request.urlopen(
                f"http://127.0.0.1:{port}/json/close/{target['id']}", timeout=PAGE_TIMEOUT_S
            ).read()
        print(
            f"first render: cold {figures[0]:.1f} ms; median of all {len(figures)} runs "
            f"{statistics.median(figures):.1f} ms; worst {max(figures):.1f} ms (goal < 1000 ms)"
        )
        if failed:
            sys.exit(1)
        if max(figures) >= 1000:
            sys.exit("first render over the 1 s goal")
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Dashboard smoothness under load: headless Chromium shows `/` while `scores serve` ingests
`scores simulate --rate RATE`; the page's frames are timed with requestAnimationFrame for a
while, and its event lag is read from the service.

    python3 scripts/dashboard-bench.py                # 100k events/s, 10 s
    RATE=20000 SECONDS=5 python3 scripts/dashboard-bench.py

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver). Everything
runs on 127.0.0.1 and stops by itself. Uses only the Python standard library and WebDriver.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

RATE = os.environ.get("RATE", "100000")
# Bursts of 1,000 keep the simulator's pacing (one timer per burst) well below its limits.
BURST = os.environ.get("BURST", "1000")
SECONDS = float(os.environ.get("SECONDS", "10"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORES = os.path.join(ROOT, "target", "release", "scores")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port):
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def webdriver(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["value"]


def main():
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install chromium chromium-driver")
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "scores-cli"], cwd=ROOT,
                   check=True)
    work = tempfile.mkdtemp()
    sim_port, port, driver_port = free_port(), free_port(), free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    children = [
        subprocess.Popen([SCORES, "simulate", "--rate", RATE, "--burst", BURST, "--ids", "--listen",
                          f"127.0.0.1:{sim_port}"], **quiet),
    ]
    try:
        wait_for_port(sim_port)
        children.append(subprocess.Popen(
            [SCORES, "serve", "--fsync", "never", "--upstream",
             f"http://127.0.0.1:{sim_port}/scores", "--listen", f"127.0.0.1:{port}",
             "--data-dir", os.path.join(work, "data")], **quiet))
        # A session of its own, so that its Chromium dies with it (see the cleanup below).
        children.append(subprocess.Popen(["chromedriver", f"--port={driver_port}"],
                                         start_new_session=True, **quiet))
        wait_for_port(port)
        wait_for_port(driver_port)
        driver = f"http://127.0.0.1:{driver_port}"
        args = ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={os.path.join(work, 'profile')}", "--window-size=1280,1500"]
        session = webdriver(driver, "POST", "/session", {"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": shutil.which("chromium"), "args": args}}}})
        sid = session["sessionId"]
        try:
            webdriver(driver, "POST", f"/session/{sid}/url", {"url": f"http://127.0.0.1:{port}/"})
            time.sleep(3)
            script = """
                const done = arguments[arguments.length - 1];
                const gaps = [];
                let last = performance.now();
                const end = last + arguments[0] * 1000;
                function frame(now) {
                  gaps.push(now - last);
                  last = now;
                  if (now < end) { requestAnimationFrame(frame); } else { done(gaps); }
                }
                requestAnimationFrame(frame);
            """
            webdriver(driver, "POST", f"/session/{sid}/timeouts", {"script": int(SECONDS * 1000 + 30000)})
            gaps = webdriver(driver, "POST", f"/session/{sid}/execute/async",
                             {"script": script, "args": [SECONDS]})
            page_seq = webdriver(driver, "POST", f"/session/{sid}/execute/sync",
                                 {"script": "return document.getElementById('seq').textContent", "args": []})
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as response:
                served = json.load(response)["seq"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = response.read().decode()
        finally:
            webdriver(driver, "DELETE", f"/session/{sid}")
        gaps.sort()
        frames = len(gaps)
        p50, p99 = gaps[frames // 2], gaps[min(frames - 1, int(frames * 0.99))]
        accepted = next(line for line in metrics.splitlines()
                        if line.startswith("scores_events_accepted_total "))
        print(f"rate {RATE}/s for {SECONDS:.0f} s: {frames / SECONDS:.1f} frames/s, "
              f"frame gap p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {gaps[-1]:.1f} ms")
        print(f"service seq {served} ({served / (SECONDS + 3):.0f} events/s since the page "
              f"loaded, roughly), counter on the page {page_seq}; {accepted}")
    finally:
        for child in reversed(children):
            try:
                os.killpg(child.pid, 9) if child.args[0] == "chromedriver" else child.kill()
            except ProcessLookupError:
                pass
            child.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

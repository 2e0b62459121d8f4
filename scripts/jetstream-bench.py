#!/usr/bin/env python3
"""Ingest through JetStream next to the file journal, in one run, on this machine.

Workload: `scores simulate --rate max --ids` with the simulator's defaults (200 students,
1,000 exams) unless STUDENTS / EXAMS say otherwise. Everything runs on 127.0.0.1 and stops by
itself. Measures, each over an 8-second window after a 2-second warm-up:

1. the file journal (`serve --fsync always`): events/s made durable and visible;
2. one replica on a one-node stream: events/s visible on the replica;
3. three replicas on a three-node cluster, stream R3: events/s visible on the slowest replica,
   and each follower's lag (events behind the stream's end), p50/p99 of 10 samples a second;
4. failover at a realistic rate (1,000 events/s): the ingester killed with SIGKILL, until the
   next event is visible on a follower, five times;
5. on the stream (3) built: a replica restarted on its data directory (time until it serves
   from its checkpoint, and until it has caught up), and a new replica with an empty one
   (events/s until it has folded everything the stream held);
6. NATS faults at 1,000 events/s, three replicas on R3: the node leading the stream killed
   (SIGKILL, then started again), three times, and every node killed for 10 s, twice: the
   stall, from the fault until the next event is visible on every replica;
7. what a hot standby costs: three replicas with an upstream (no ids; `simulate --broadcast` at
   200 events/s, and at full speed a sequence of its own for each connection) and a fourth with
   `--follow-only`, on R3: CPU-seconds over a 10-second window and resident memory of a standby
   beside the replica without an upstream;
8. an upstream without ids (`simulate --broadcast`, 200 events/s), three replicas on R3, through
   the ingester killed (SIGKILL) twice, paused (SIGSTOP) for 4 s, stopped (SIGTERM) twice, the
   stream leader's node killed and every node killed for 10 s: for each fault the stall until
   every replica shows an event stored after it, and at the end the events the upstream sent
   after the first stored that the stream lacks (a listener connected before the replicas
   records what it sent).

CPU-seconds (user + system, from /proc) of the scores processes and of the nats-servers are
printed beside each figure. Usage: python3 scripts/jetstream-bench.py [BINARY]
(default: this tree's release build, built first); PARTS=1,3 runs some parts only (default
1,2,3,4,6; 5 comes with 3; 7 and 8 only when asked); KEEP=1 keeps the logs (RUST_LOG, default warn, sets their level). Needs nats-server 2.10+ on the PATH.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDENTS = os.environ.get("STUDENTS", "200")
EXAMS = os.environ.get("EXAMS", "1000")
WINDOW = 8.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0


def get(port, path, timeout=2, why=None):
    """The JSON body of a 200 answer, else None (and what went wrong appended to `why`)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as error:
        if why is not None:
            why.append(f"{error.code} {error.read()[:300]!r}")
    except Exception as error:
        if why is not None:
            why.append(repr(error))
    return None


def seq(port):
    """The replica's sequence number; under full load an answer may take a while."""
    deadline = time.time() + 20
    why = []
    while time.time() < deadline:
        ready = get(port, "/readyz", timeout=5, why=why)
        if ready:
            return ready["seq"]
        time.sleep(0.05)
    sys.exit(f"the replica on {port} does not answer /readyz within 20 s: {why[-1] if why else ''}")


def healthy(monitor):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


def wait_port(port, within=20):
    deadline = time.time() + within
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


class Run:
    def __init__(self, binary, scratch):
        self.binary, self.scratch, self.procs, self.clusters = binary, scratch, [], 0
        # The last cluster's nodes: (name, config path, monitor port, process).
        self.nodes = []

    def start(self, args, log):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "ab"),
                                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
        self.procs.append(proc)
        return proc

    def simulator(self, rate):
        port = free_port()
        self.start([self.binary, "simulate", "--listen", f"127.0.0.1:{port}", "--rate", rate,
                    "--ids", "--students", STUDENTS, "--exams", EXAMS],
                   os.path.join(self.scratch, "simulate.log"))
        wait_port(port)
        return port

    def serve(self, name, upstream, extra):
        port = free_port()
        args = [self.binary, "serve", "--listen", f"127.0.0.1:{port}",
                "--data-dir", os.path.join(self.scratch, name)] + extra
        args += ["--upstream", f"http://127.0.0.1:{upstream}/scores"] if upstream else ["--follow-only"]
        proc = self.start(args, os.path.join(self.scratch, f"{name}.log"))
        wait_port(port)
        return port, proc

    def nats(self, n):
        ports = [free_port() for _ in range(n)]
        routes = [free_port() for _ in range(n)]
        monitors = [free_port() for _ in range(n)]
        procs = []
        self.nodes = []
        # Stores of their own: a node that joins a cluster with another run's stream of the same
        # name in its store serves that stream's messages to direct gets.
        self.clusters += 1
        for i in range(n):
            store = os.path.join(self.scratch, f"nats{self.clusters}-{i}")
            config = [f"server_name: n{i}", f"listen: 127.0.0.1:{ports[i]}", f"http: 127.0.0.1:{monitors[i]}",
                      f"jetstream {{ store_dir: {json.dumps(store)}, sync_interval: always }}"]
            if n > 1:
                others = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(routes) if j != i)
                config.append(f"cluster {{ name: bench, listen: 127.0.0.1:{routes[i]}, routes: [{others}] }}")
            path = os.path.join(self.scratch, f"nats{self.clusters}-{i}.conf")
            open(path, "w").write("\n".join(config) + "\n")
            procs.append(self.start(["nats-server", "-c", path], os.path.join(self.scratch, f"nats{self.clusters}-{i}.log")))
            self.nodes.append([f"n{i}", path, monitors[i], procs[-1]])
        # Every server healthy (for a cluster member: it knows the meta leader) before any client
        # comes.
        for monitor in monitors:
            deadline = time.time() + 30
            while not healthy(monitor):
                if time.time() > deadline:
                    sys.exit(f"nats-server (monitor port {monitor}) is not healthy within 30 s")
                time.sleep(0.1)
        return "nats://" + ",".join(f"127.0.0.1:{p}" for p in ports), procs

    def restart_node(self, node):
        """Starts a killed node of the last cluster again, on its store, and waits until healthy."""
        name, path, monitor, _ = node
        node[3] = self.start(["nats-server", "-c", path], os.path.join(self.scratch, f"{name}-again.log"))
        deadline = time.time() + 60
        while not healthy(monitor):
            if time.time() > deadline:
                sys.exit(f"nats-server {name} is not healthy again within 60 s")
            time.sleep(0.1)

    def outage(self, seconds=10):
        """Kills every node of the last cluster, waits `seconds`, and starts them again."""
        for node in self.nodes:
            node[3].kill()
            node[3].wait()
        time.sleep(seconds)
        for node in self.nodes:
            name, path, _, _ = node
            node[3] = self.start(["nats-server", "-c", path], os.path.join(self.scratch, f"{name}-again.log"))

    def stream_leader(self, stream="scores"):
        """The node of the last cluster that leads `stream`, as its monitoring port says."""
        for name, _, monitor, proc in self.nodes:
            if proc.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/jsz?streams=true", timeout=2) as r:
                    jsz = json.load(r)
            except (OSError, ValueError):
                continue
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    leader = (detail.get("cluster") or {}).get("leader")
                    if detail.get("name") == stream and leader:
                        return next(node for node in self.nodes if node[0] == leader)
        return None

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def window(ports, pids):
    """Events/s visible on the slowest of `ports` over WINDOW seconds, and CPU-seconds used."""
    time.sleep(2)
    start = [seq(p) for p in ports]
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    t0 = time.time()
    time.sleep(WINDOW)
    end = [seq(p) for p in ports]
    elapsed = time.time() - t0
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
    rate = min((e - s) / elapsed for s, e in zip(start, end))
    return rate, cpu, elapsed


def sse_events(port, until=None, stop_after=None):
    """The data of each event `GET /scores` on `port` sends, as (studentId, exam, score), until
    the server ends the stream or `stop_after` events have come; appended to `until` (a list)
    as they arrive when one is given."""
    events = until if until is not None else []
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/scores", timeout=600) as response:
        for line in response:
            if line.startswith(b"data:"):
                data = json.loads(line[5:])
                events.append((data["studentId"], data["exam"], data["score"]))
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events


def faults_without_ids(run):
    import threading
    url, _ = run.nats(3)
    upstream = free_port()
    run.start([run.binary, "simulate", "--listen", f"127.0.0.1:{upstream}", "--rate", "200", "--broadcast",
               "--students", "300", "--exams", "400"], os.path.join(run.scratch, "simulate.log"))
    wait_port(upstream)
    heard = []
    threading.Thread(target=sse_events, args=(upstream, heard), daemon=True).start()
    extra = ["--log", url, "--stream-replicas", "3", "--lease-ttl", "2s"]
    replicas = [run.serve(f"ni-{i}", upstream, extra) for i in range(3)]
    time.sleep(5)

    def ingester():
        deadline = time.time() + 20
        while time.time() < deadline:
            for i, (p, _) in enumerate(replicas):
                if (get(p, "/readyz") or {}).get("role") == "ingester":
                    return i
            time.sleep(0.05)
        sys.exit("no ingester")

    def stall(fault, but=None, within=120):
        """Seconds from `fault()` until every replica (but the one at index `but`, the one the
        fault hit) shows an event stored after it."""
        ports = [p for i, (p, _) in enumerate(replicas) if i != but]
        end = max(seq(p) + (get(p, "/readyz") or {}).get("lag", 0) for p in ports)
        t0 = time.time()
        fault()
        while min(seq(p) for p in ports) <= end and time.time() - t0 < within:
            time.sleep(0.02)
        return time.time() - t0

    results = []
    for fault in ["kill", "kill", "pause", "stop", "stop"]:
        i = ingester()
        proc = replicas[i][1]
        if fault == "kill":
            took = stall(lambda: (proc.send_signal(signal.SIGKILL), proc.wait()), but=i)
        elif fault == "stop":
            took = stall(lambda: (proc.send_signal(signal.SIGTERM), proc.wait()), but=i)
        else:
            took = stall(lambda: proc.send_signal(signal.SIGSTOP), but=i)
            time.sleep(max(0, 4 - took))
            proc.send_signal(signal.SIGCONT)
        if fault != "pause":
            replicas[i] = run.serve(f"ni-{i}", upstream, extra)
        results.append((fault, took))
        time.sleep(3)
    leader = run.stream_leader()
    if leader is None:
        sys.exit("no stream leader found")
    results.append(("leader node killed", stall(lambda: (leader[3].kill(), leader[3].wait()))))
    run.restart_node(leader)
    time.sleep(5)

    results.append(("every node down 10 s", stall(run.outage)))
    time.sleep(5)
    ports = [p for p, _ in replicas]
    print("without ids at 200 events/s, from the fault to the next event on every replica: "
          + ", ".join(f"{fault} {took:.2f} s" for fault, took in results))
    # What the stream holds against what the upstream sent after the first stored event.
    stored = sse_events(ports[0], stop_after=seq(ports[0]))
    first = heard.index(stored[0])
    sent = heard[first:first + len(stored) + 400]
    lost, j = 0, 0
    for event in stored:
        while j < len(sent) and sent[j] != event:
            lost, j = lost + 1, j + 1
        j += 1
    in_order = j <= len(sent)
    print(f"events lost: {lost} of {len(stored) + lost} sent after the first stored "
          f"({'in order' if in_order else 'NOT a subsequence of what was sent'}); "
          f"dropped from standby windows: "
          + ", ".join(str(int(metric(p, "scores_standby_dropped_events_total") or 0)) for p in ports))
    run.stop()


def metric(port, name):
    """One value of `/metrics` on `port`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else None
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "scores-cli"], cwd=ROOT, check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "scores")
    if not shutil.which("nats-server"):
        sys.exit("nats-server 2.10+ is needed on the PATH (bash scripts/test.sh installs it)")
    print(f"workload: simulate --rate max --ids, {STUDENTS} students x {EXAMS} exams; windows of {WINDOW:.0f} s")
    scratch = tempfile.mkdtemp()
    run = Run(binary, scratch)
    parts = os.environ.get("PARTS", "1,2,3,4,6").split(",")
    try:
        # 1. The file journal.
        if "1" in parts:
            sim = run.simulator("max")
            port, proc = run.serve("file", sim, ["--fsync", "always"])
            rate, cpu, elapsed = window([port], [proc.pid])
            print(f"file journal, 1 process:          {rate / 1e6:.2f} M events/s  ({cpu:.1f} CPU-s in {elapsed:.1f} s)")
            run.stop()

        # 2. One replica, one-node stream.
        if "2" in parts:
            url, servers = run.nats(1)
            sim = run.simulator("max")
            port, proc = run.serve("r1", sim, ["--log", url])
            rate, cpu, elapsed = window([port], [proc.pid])
            nats_cpu = sum(cpu_seconds(s.pid) for s in servers)
            print(f"JetStream, 1 node, 1 replica:     {rate / 1e6:.2f} M events/s  ({cpu:.1f} CPU-s scores, "
                  f"{nats_cpu:.1f} CPU-s nats-server since start, in {elapsed:.1f} s)")
            run.stop()

        # 3. Three replicas, three-node R3 cluster, full speed.
        if "3" in parts:
            url, servers = run.nats(3)
            sim = run.simulator("max")
            replicas = [run.serve(f"r3-{i}", sim, ["--log", url, "--stream-replicas", "3"]) for i in range(3)]
            ports = [p for p, _ in replicas]
            rate, cpu, elapsed = window(ports, [proc.pid for _, proc in replicas])
            lags = []
            for _ in range(10 * 5):
                for p in ports:
                    ready = get(p, "/readyz")
                    if ready and ready.get("role") == "follower":
                        lags.append(ready.get("lag", 0))
                time.sleep(0.1)
            lags.sort()
            p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0
            print(f"JetStream, 3 nodes R3, 3 replicas: {rate / 1e6:.2f} M events/s on the slowest replica "
                  f"({cpu:.1f} CPU-s scores in {elapsed:.1f} s); follower lag p50 {statistics.median(lags):.0f}, "
                  f"p99 {p99} events")

            # Restart and catch-up on the stream that run built: a replica restarted on its data
            # directory, then a new one with an empty one.
            held = max(seq(p) for p in ports)
            for _, proc in replicas:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
            t0 = time.time()
            port, proc = run.serve("r3-0", None, ["--log", url])
            while get(port, "/readyz", timeout=0.5) is None and time.time() - t0 < 60:
                time.sleep(0.01)
            serving = time.time() - t0
            while seq(port) < held and time.time() - t0 < 120:
                time.sleep(0.01)
            print(f"restart with {held} events in the stream: serving from its checkpoint after {serving:.2f} s "
                  f"(seq {seq(port)}), caught up after {time.time() - t0:.2f} s")
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            port, proc = run.serve("new", None, ["--log", url])
            t0, cpu0 = time.time(), cpu_seconds(proc.pid)
            while seq(port) < held and time.time() - t0 < 120:
                time.sleep(0.01)
            elapsed = time.time() - t0
            print(f"catch-up of a new replica: {held} events in {elapsed:.2f} s = {held / elapsed / 1e6:.2f} M events/s "
                  f"({cpu_seconds(proc.pid) - cpu0:.1f} CPU-s)")
            run.stop()

        # 4. Failover at a realistic rate, and lag there.
        if "4" in parts:
            url, servers = run.nats(3)
            sim = run.simulator("1000")
            replicas = [run.serve(f"fo-{i}", sim, ["--log", url, "--stream-replicas", "3", "--lease-ttl", "3s"])
                        for i in range(3)]
            time.sleep(3)
            lags = []
            for _ in range(30):
                for p, _ in replicas:
                    ready = get(p, "/readyz")
                    if ready and ready.get("role") == "follower":
                        lags.append(ready.get("lag", 0))
                time.sleep(0.1)
            lags.sort()
            print(f"at 1,000 events/s: follower lag p50 {statistics.median(lags):.0f}, "
                  f"p99 {lags[min(len(lags) - 1, int(len(lags) * 0.99))]} events")
            times = []
            for round_ in range(5):
                ingester = next((i for i, (p, _) in enumerate(replicas)
                                 if (get(p, "/readyz") or {}).get("role") == "ingester"), None)
                deadline = time.time() + 15
                while ingester is None and time.time() < deadline:
                    time.sleep(0.05)
                    ingester = next((i for i, (p, _) in enumerate(replicas)
                                     if (get(p, "/readyz") or {}).get("role") == "ingester"), None)
                if ingester is None:
                    sys.exit("no ingester")
                # The follower nearest the stream's end: a replica restarted a moment ago may still
                # be catching up.
                followers = [p for i, (p, _) in enumerate(replicas) if i != ingester]
                follower = min(followers, key=lambda p: (get(p, "/readyz") or {}).get("lag", 1 << 62))
                replicas[ingester][1].send_signal(signal.SIGKILL)
                killed = time.time()
                # The stream's end once what the killed ingester published has reached the
                # follower: events stored before the kill do not count.
                end = 0
                while time.time() - killed < 0.3:
                    ready = get(follower, "/readyz") or {}
                    end = max(end, ready.get("seq", 0) + ready.get("lag", 0))
                    time.sleep(0.02)
                killed_at_seq = end
                while seq(follower) <= killed_at_seq and time.time() - killed < 30:
                    time.sleep(0.02)
                times.append(time.time() - killed)
                replicas[ingester][1].wait()
                # Back on its own data directory, as an operator (or a supervisor) would restart it.
                replicas[ingester] = run.serve(f"fo-{ingester}", sim,
                                               ["--log", url, "--stream-replicas", "3", "--lease-ttl", "3s"])
                time.sleep(2)
            print("failover (SIGKILL to the next event visible on a follower), lease TTL 3 s: "
                  + ", ".join(f"{t:.2f}" for t in times) + " s")
            run.stop()

        # 6. NATS faults at a realistic rate: the stall until every replica shows a new event.
        if "6" in parts:
            url, servers = run.nats(3)
            sim = run.simulator("1000")
            replicas = [run.serve(f"nf-{i}", sim, ["--log", url, "--stream-replicas", "3"]) for i in range(3)]
            ports = [p for p, _ in replicas]
            time.sleep(5)

            def stall(fault, within=120):
                """Seconds from `fault()` until every replica shows an event stored after it."""
                end = max(seq(p) + (get(p, "/readyz") or {}).get("lag", 0) for p in ports)
                cpu0 = sum(cpu_seconds(proc.pid) for _, proc in replicas)
                t0 = time.time()
                fault()
                while min(seq(p) for p in ports) <= end and time.time() - t0 < within:
                    time.sleep(0.02)
                return time.time() - t0, sum(cpu_seconds(proc.pid) for _, proc in replicas) - cpu0

            leader_losses = []
            for _ in range(3):
                leader = run.stream_leader()
                if leader is None:
                    sys.exit("no stream leader found")
                leader_losses.append(stall(lambda: (leader[3].kill(), leader[3].wait())))
                run.restart_node(leader)
                time.sleep(5)
            print("the stream leader's node killed (to the next event on every replica): "
                  + ", ".join(f"{t:.2f} s ({cpu:.1f} CPU-s)" for t, cpu in leader_losses))
            outages = []
            for _ in range(2):
                outages.append(stall(run.outage))
                time.sleep(5)
            print("every node killed for 10 s (to the next event on every replica, the 10 s included): "
                  + ", ".join(f"{t:.2f} s ({cpu:.1f} CPU-s)" for t, cpu in outages))
        # 7. What a hot standby costs, beside a replica without an upstream.
        if "7" in parts:
            for rate in ["200", "max"]:
                url, servers = run.nats(3)
                port = free_port()
                # At full speed a broadcast closes a connection that falls 1,024 chunks behind:
                # there each connection gets a sequence of its own, as fast as it reads.
                mode = ["--broadcast"] if rate != "max" else []
                run.start([run.binary, "simulate", "--listen", f"127.0.0.1:{port}", "--rate", rate] + mode,
                          os.path.join(run.scratch, "simulate.log"))
                wait_port(port)
                replicas = [run.serve(f"sb{rate}-{i}", port, ["--log", url, "--stream-replicas", "3"]) for i in range(3)]
                follower = run.serve(f"sb{rate}-f", None, ["--log", url])
                time.sleep(5)
                roles = [(get(p, "/readyz") or {}).get("role") for p, _ in replicas]
                standby = next(proc for (p, proc), role in zip(replicas, roles) if role == "follower")
                pids = {"standby": standby.pid, "follow-only": follower[1].pid}
                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                t0 = time.time()
                time.sleep(10)
                elapsed = time.time() - t0
                figures = ", ".join(f"{name} {cpu_seconds(pid) - cpu0[name]:.2f} CPU-s, RSS {rss_mb(pid):.0f} MB"
                                    for name, pid in pids.items())
                print(f"standby cost at {rate} events/s over {elapsed:.1f} s (seq {seq(follower[0])}): {figures}")
                run.stop()
        # 8. Faults with an upstream without ids: the stall, and what is lost.
        if "8" in parts:
            faults_without_ids(run)
    except SystemExit:
        # A process that died says why in its log.
        for name in sorted(os.listdir(scratch)):
            if name.endswith(".log"):
                lines = open(os.path.join(scratch, name), errors="replace").read().splitlines()
                print(f"--- {name} ---", *lines[-8:], sep="\n", file=sys.stderr)
        raise
    finally:
        run.stop()
        if os.environ.get("KEEP"):
            print(f"logs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

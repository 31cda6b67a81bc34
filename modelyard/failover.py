"""Failover drills on loopback: two real model-server replicas behind a real load balancer, under open-loop
load, while one of them is told to stop, killed, or cut off; a verdict on the requests lost.

Debian's HAProxy stands in for what routes to model pods: it health-checks each replica's readiness
(`/v2/health/ready`) and routes round robin, in one of three ways (BALANCERS):

- `service`: as a Kubernetes Service through kube-proxy: no retry at all (a refused connection is the
  client's error);
- `safe`: what an L7 proxy may do for any method: a request whose connection could not be made is tried on
  another replica (HAProxy's `retry-on conn-failure` with `option redispatch`), and nothing that reached a
  server is replayed;
- `idempotent`: also replays a request whose server closed without answering, timed out or answered 503
  (`retry-on conn-failure empty-response response-timeout 503`), which only an idempotent call allows. An
  embedding request is one: the same texts give the same vectors and nothing changes. HAProxy copies the whole
  request for it, and one larger than its buffer (`tune.bufsize`, 16 KiB by default) is never replayed
  (HAProxy 2.6 configuration.txt, `retry-on`).

A pod's termination is replayed as the plan renders it (`Termination.of_pod`): at the deletion the balancer
drops the replica after the endpoints' propagation while the replica keeps serving through its preStop pause;
then SIGTERM (the server drains: stops accepting, answers what it holds), and SIGKILL at the grace period if it
is still there. `scale` shortens every one of those times alike (the order of events is what is judged). A lost
zone is a replica in a network namespace of the drill's own making, its link cut: packets vanish, nothing is
refused. Needs root for that one (`ip netns`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard import loadtest as lt
from modelyard.policies.governance.rules.pods import (
    DEFAULT_GRACE_S,
    MODEL_SERVER_RUNTIME,
    drain_seconds,
)
from modelyard.policies.governance.rules.pods import MODEL_SERVER_DEFAULT_DRAIN_S as SERVER_DEFAULT_DRAIN_S
from modelyard.programs import REPO_ROOT
from modelyard.workloads.runtimes import ENDPOINT_PROPAGATION_S

SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"
#: The balancer's wait for a server's answer: a load balancer's (30 s; a slow answer is latency, not a loss),
#: and in the lost-zone drill a gateway's per-try timeout, after which an idempotent call is replayed elsewhere.
SERVER_TIMEOUT_S = 30.0
ZONE_TIMEOUT_S = 2.0
#: How long after a pod's deletion the balancer drops it: the endpoints' propagation the plan allows for.
PROPAGATION_S = float(ENDPOINT_PROPAGATION_S)


class DrillError(Exception):
    """A drill cannot run here (a tool missing, no permission); the message says which."""


@dataclass(frozen=True)
class Termination:
    """A model pod's termination as rendered: its preStop pause, the server's drain, the pod's grace period (read
    as rule model-pod-termination reads them)."""

    prestop_s: float
    drain_s: float
    grace_s: float

    @classmethod
    def of_pod(cls, pod_spec: Mapping[str, Any], container: str = "kserve-container") -> Termination:
        [c] = [c for c in pod_spec.get("containers", []) if c.get("name") == container]
        pause = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        drain = drain_seconds([str(a) for a in c.get("args", [])], MODEL_SERVER_RUNTIME)
        if drain is None:
            raise DrillError(f"{container}: its drain flag is not a number of seconds")
        return cls(float(pause), float(drain), float(pod_spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)))

    def scaled(self, scale: float) -> Termination:
        return Termination(self.prestop_s * scale, self.drain_s * scale, self.grace_s * scale)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Zone:
    """A network namespace joined to this one by a veth pair: `address` reaches a process inside it; `cut()` takes
    the link down inside it, so what is sent there vanishes (no reset, no refusal), as in a lost zone."""

    def __init__(self, name: str, subnet: int = 77):
        if shutil.which("ip") is None:
            raise DrillError("`ip` (iproute2) is missing: a lost zone needs a network namespace")
        self.name, self.host_if, self.peer_if = name, f"{name[:8]}-h", f"{name[:8]}-z"
        self.host_address, self.address = f"10.{subnet}.0.1", f"10.{subnet}.0.2"
        steps = [
            ["ip", "netns", "add", name],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if],
            ["ip", "link", "set", self.peer_if, "netns", name],
            ["ip", "addr", "add", f"{self.host_address}/24", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "-n", name, "addr", "add", f"{self.address}/24", "dev", self.peer_if],
            ["ip", "-n", name, "link", "set", self.peer_if, "up"],
            ["ip", "-n", name, "link", "set", "lo", "up"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                self.close()
                raise DrillError(f"{' '.join(step)}: {done.stderr.strip()} (a lost zone needs root: ip netns)")

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        subprocess.run(["ip", "-n", self.name, "link", "set", self.peer_if, "down"], check=True, capture_output=True)

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


class Replica:
    """One model server (the bundled model, or constant vectors with `constant`) on `host`:`port`, its drain
    `drain_s`, one front, no cache (every request computed); started in `zone` when one is given."""

    def __init__(
        self, workdir: Path, name: str, *, drain_s: float, constant: bool, zone: Zone | None = None, python: Path
    ):
        self.name = name
        self.host = "127.0.0.1" if zone is None else zone.address
        self.port = _free_port() if zone is None else 18080
        argv = [
            str(python), "-m", "modelyard_server", "--host", self.host, "--http_port", str(self.port),
            "--workers", "1", "--grace_period", str(max(1, round(drain_s))), "--cache_mb", "0",
            # A queue that absorbs the moment the survivor takes the other's share: what is judged is failover.
            "--max_queue", "1024",
            *(["--constant_encoder"] if constant else []),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workloads" / "serving")}
        self.log = workdir / f"replica-{name}.log"
        with self.log.open("wb") as out:
            # A session of its own: SIGKILL takes every process of the replica, as a container's kill does.
            self.proc = subprocess.Popen(
                argv if zone is None else zone.command(argv),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise DrillError(
                    f"replica {self.name} exited with {self.proc.returncode}: {self.log.read_text()[-500:]}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise DrillError(f"replica {self.name} not ready in {timeout:g} s")

    def signal(self, sig: int) -> None:
        """SIGTERM to the server's first process (the kubelet's, to the container's PID 1), which passes it on;
        SIGKILL to all of them (the container's cgroup killed). In a zone the first process is `ip netns exec`,
        which execs the server: the same pid."""
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)
            elif self.proc.poll() is None:
                os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)


BALANCERS = {
    "service": "    retries 0\n",
    "safe": "    retries 3\n    option redispatch 1\n    retry-on conn-failure\n",
    "idempotent": (
        "    retries 3\n    option redispatch 1\n    retry-on conn-failure empty-response response-timeout 503\n"
    ),
}


class Balancer:
    """HAProxy in front of the replicas, health-checking their readiness every 500 ms (down after 3 failures: a
    kubelet's readiness probe, every 5 s and down after 3, is slower still)."""

    def __init__(self, workdir: Path, replicas: list[Replica], kind: str, server_timeout_s: float = SERVER_TIMEOUT_S):
        exe = shutil.which("haproxy")
        if exe is None:
            raise DrillError("haproxy is missing: install Debian's haproxy package (make test does)")
        self.port = _free_port()
        self.socket = workdir / "haproxy.sock"
        servers = "".join(f"    server {r.name} {r.host}:{r.port} check inter 500ms fall 3 rise 2\n" for r in replicas)
        config = (
            "global\n"
            f"    stats socket {self.socket} mode 600 level admin\n"
            "    maxconn 4000\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 500ms\n"
            "    timeout client 30s\n"
            f"    timeout server {server_timeout_s:g}s\n"
            "    timeout check 500ms\n"
            f"{BALANCERS[kind]}"
            "frontend models\n"
            f"    bind 127.0.0.1:{self.port}\n"
            "    default_backend replicas\n"
            "backend replicas\n"
            "    balance roundrobin\n"
            "    option httpchk GET /v2/health/ready\n"
            "    http-check expect status 200\n"
            f"{servers}"
        )
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(config)
        check = subprocess.run([exe, "-c", "-f", str(self.config)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise DrillError(f"haproxy refused its configuration: {check.stdout}{check.stderr}")
        self.log = workdir / "haproxy.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([exe, "-db", "-f", str(self.config)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not self.socket.exists() and time.time() < deadline:
            if self.proc.poll() is not None:
                raise DrillError(f"haproxy exited with {self.proc.returncode}: {self.log.read_text()[-500:]}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def remove(self, replica: Replica) -> None:
        """What the endpoints' propagation ends in: no new request goes to `replica`."""
        self.command(f"set server replicas/{replica.name} state maint")

    def wait_up(self, replicas: list[Replica], timeout: float = 10) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            stat = self.command("show stat")
            if all(any(line.startswith(f"replicas,{r.name},") and ",UP," in line for line in stat.splitlines())
                   for r in replicas):  # fmt: skip
                return
            time.sleep(0.1)
        raise DrillError(f"the balancer did not see every replica up in {timeout:g} s: {self.command('show stat')}")

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@dataclass
class Drill:
    """What happened and the verdict: `lost` requests (not answered 200), against `allowed`."""

    name: str
    samples: list[lt.Sample]
    event_at: float
    allowed: int
    #: Requests sent before the event and not answered by then (on either replica: a bound on those on it).
    in_flight_at_event: int
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(1 for s in self.samples if not s.ok)

    @property
    def ok(self) -> bool:
        return self.lost <= self.allowed

    def report(self) -> str:
        latencies = sorted(s.latency for s in self.samples if s.ok and s.latency is not None)
        p99 = latencies[max(0, int(0.99 * len(latencies)) - 1)] * 1000 if latencies else float("nan")
        kinds: dict[str, int] = {}
        for s in self.samples:
            if not s.ok:
                kind = (s.error or "").split(":", 1)[0]
                kinds[kind] = kinds.get(kind, 0) + 1
        lost = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
        return (
            f"{self.name}: {len(self.samples)} requests, {self.lost} lost{f' ({lost})' if lost else ''}, "
            f"{self.in_flight_at_event} in flight at the event, answered p99 {p99:,.0f} ms; allowed {self.allowed}: "
            f"{'PASS' if self.ok else 'FAIL'}" + "".join(f"; {n}" for n in self.notes)
        )


def _in_flight(samples: list[lt.Sample], at: float) -> int:
    return sum(
        1
        for s in samples
        if not math.isnan(s.sent) and s.sent <= at and (s.latency is None or s.scheduled + s.latency > at)
    )


@contextlib.contextmanager
def _setup(
    kind: str,
    drain_s: float,
    constant: bool,
    python: Path,
    zone: bool = False,
    server_timeout_s: float = SERVER_TIMEOUT_S,
) -> Iterator[tuple[list[Replica], Balancer, Zone | None]]:
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-failover-"))
    made_zone = Zone(f"myz{os.getpid() % 100000}") if zone else None
    replicas = [
        Replica(workdir, "a", drain_s=drain_s, constant=constant, python=python),
        Replica(workdir, "b", drain_s=drain_s, constant=constant, python=python, zone=made_zone),
    ]
    balancer = None
    try:
        for r in replicas:
            r.wait_ready()
        balancer = Balancer(workdir, replicas, kind, server_timeout_s)
        balancer.wait_up(replicas)
        yield replicas, balancer, made_zone
    finally:
        if balancer is not None:
            balancer.stop()
        for r in replicas:
            r.stop()
        if made_zone is not None:
            made_zone.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _load(url: str, rate: float, seconds: float, texts: int) -> tuple[threading.Thread, list[list[lt.Sample]], float]:
    """The open loop in a thread of its own; (the thread, [its samples once done], its start on perf_counter)."""
    target = lt.Target.parse(url, lt.EMBEDDINGS_PATH)
    times = lt.schedule(rate, seconds, "constant")
    bodies = lt.embeddings_bodies("minilm", len(times), texts, seed=3)
    out: list[list[lt.Sample]] = []
    start = time.perf_counter() + 0.2

    def run() -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        try:
            out.append(loop.run_until_complete(lt.run_async(target, bodies, times, timeout=30, start=start)))
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out, start


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.perf_counter()))


def terminate(
    termination: Termination,
    *,
    rate: float,
    seconds: float,
    event_at: float,
    kind: str = "service",
    scale: float = 1.0,
    texts: int = 1,
    constant: bool = True,
    python: Path = SERVING_PYTHON,
    name: str = "SIGTERM",
) -> Drill:
    """One replica deleted at `event_at` s into the run, its termination replayed (its times and the endpoints'
    propagation, PROPAGATION_S, times `scale`): 0 lost requests allowed."""
    t = termination.scaled(scale)
    with _setup(kind, t.drain_s, constant, python) as (replicas, balancer, _):
        thread, out, start = _load(balancer.url, rate, seconds, texts)
        deleted = start + event_at
        events = sorted(
            [
                (deleted + PROPAGATION_S * scale, "propagated", lambda: balancer.remove(replicas[0])),
                (deleted + t.prestop_s, "sigterm", lambda: replicas[0].signal(signal.SIGTERM)),
            ],
            key=lambda e: e[0],
        )
        for at, _, act in events:
            _sleep_until(at)
            act()
        killed_at = deleted + t.prestop_s + max(0.0, t.grace_s - t.prestop_s)
        while replicas[0].proc.poll() is None and time.perf_counter() < killed_at:
            time.sleep(0.02)
        notes = []
        if replicas[0].proc.poll() is None:
            replicas[0].signal(signal.SIGKILL)
            notes.append("the replica was still draining at its grace period: SIGKILL")
        else:
            notes.append(f"the replica exited {replicas[0].proc.returncode} after SIGTERM")
        thread.join()
    samples = out[0]
    return Drill(name, samples, event_at, 0, _in_flight(samples, event_at), notes)


def steady(
    *, rate: float, seconds: float, texts: int = 1, constant: bool = True, python: Path = SERVING_PYTHON
) -> list[lt.Sample]:
    """The same two replicas and balancer (`safe`) under the open loop, nothing happening: what they carry."""
    with _setup("safe", SERVER_DEFAULT_DRAIN_S, constant, python) as (_, balancer, _zone):
        thread, out, _start = _load(balancer.url, rate, seconds, texts)
        thread.join()
    return out[0]


def kill(
    *,
    rate: float,
    seconds: float,
    event_at: float,
    kind: str = "safe",
    texts: int = 1,
    constant: bool = True,
    python: Path = SERVING_PYTHON,
) -> Drill:
    """SIGKILL to one replica at `event_at`: behind a `safe` balancer at most what was in flight may be lost, none
    where it replays idempotent calls (`idempotent`); behind a bare `service`, what it is sent until its
    readiness fails too."""
    with _setup(kind, SERVER_DEFAULT_DRAIN_S, constant, python) as (replicas, balancer, _):
        thread, out, start = _load(balancer.url, rate, seconds, texts)
        _sleep_until(start + event_at)
        replicas[0].signal(signal.SIGKILL)
        thread.join()
    samples = out[0]
    in_flight = _in_flight(samples, event_at)
    return Drill(f"SIGKILL ({kind})", samples, event_at, 0 if kind == "idempotent" else in_flight, in_flight)


def lose_zone(
    *,
    rate: float,
    seconds: float,
    event_at: float,
    texts: int = 1,
    constant: bool = True,
    python: Path = SERVING_PYTHON,
) -> Drill:
    """The link of the replica in its own network namespace cut at `event_at`, behind the `idempotent` balancer:
    what it held times out at the balancer's per-try timeout (ZONE_TIMEOUT_S) and is replayed on the other; 0
    lost allowed."""
    setup = _setup("idempotent", SERVER_DEFAULT_DRAIN_S, constant, python, zone=True, server_timeout_s=ZONE_TIMEOUT_S)
    with setup as (replicas, balancer, zone):
        assert zone is not None
        thread, out, start = _load(balancer.url, rate, seconds, texts)
        _sleep_until(start + event_at)
        zone.cut()
        thread.join()
        notes = [f"replica {replicas[1].name} cut off at {replicas[1].host}"]
    samples = out[0]
    return Drill("lost zone (idempotent)", samples, event_at, 0, _in_flight(samples, event_at), notes)

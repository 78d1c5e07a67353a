"""A real 6-node Redis Cluster on loopback (3 masters, 3 replicas) for tests and load scripts.

    with LocalCluster() as cluster:
        url = cluster.url                       # redis://127.0.0.1:<seed port>/0
        cluster.kill_master(owning_key=b"...")  # SIGKILL; its replica takes over
        cluster.wait_healthy()
        cluster.reshard(slots=..., to_port=...) # live slot migration (clients see MOVED/ASK)

Nodes are ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create ...
--cluster-replicas 1 --cluster-yes``. Ports are chosen so that each port and its cluster-bus port
(port + 10000) are free. ``cluster-node-timeout`` is 1,000 ms, so a dead master is failed over
after about 1-3 s (the replica's election delay is random by design). No persistence (replicas
hold the data); everything is killed and removed on exit.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

import redis as sync_redis

NODE_TIMEOUT_MS = 1000


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(n: int = 6, rng: random.Random | None = None) -> list[int]:
    """``n`` consecutive-ish ports in 20000-29999 whose port + 10000 (the bus) is free too."""
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - 10 * n)
        ports = [base + 7 * i for i in range(n)]
        if all(_free(p) and _free(p + 10000) for p in ports):
            return ports
    raise RuntimeError("no free ports for a local Redis Cluster")


def _serves(slots: str, slot: int) -> bool:
    for part in slots.split():
        if part.startswith("["):
            continue
        lo, _, hi = part.partition("-")
        if int(lo) <= slot <= int(hi or lo):
            return True
    return False


class LocalCluster:
    """See the module docstring."""

    def __init__(self, *, node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if exe is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed (apt-get install redis-server)")
        self.exe, self.cli = exe, cli
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def seed_urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{p}/0" for p in self.ports]

    def _start_node(self, port: int) -> None:
        assert self._dir is not None
        args = [self.exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms), "--save", "",
                "--appendonly", "no", "--dir", self._dir.name, "--protected-mode", "no",
                # DEBUG SLEEP from loopback: tests stall a node (a replica falling behind)
                "--enable-debug-command", "local"]
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> LocalCluster:
        self._dir = tempfile.TemporaryDirectory(prefix="dsp-cluster-")
        self.ports = cluster_ports()
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            self._wait_ping(port)
        subprocess.run([self.cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        self.wait_healthy()
        return self

    def _wait_ping(self, port: int, timeout_s: float = 10.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                with sync_redis.Redis(port=port, socket_timeout=0.5) as r:
                    if r.ping():
                        return
            except sync_redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis node {port} did not start")

    def node(self, port: int) -> sync_redis.Redis:
        return sync_redis.Redis(port=port, socket_timeout=2.0)

    def nodes(self) -> list[dict[str, str]]:
        """``CLUSTER NODES`` as seen by a live node: id, port, flags, master id, slots."""
        for port in self.ports:
            if port in self.procs and self.procs[port].poll() is None:
                with self.node(port) as r:
                    text = r.execute_command("CLUSTER", "NODES")
                break
        else:
            raise RuntimeError("no live node")
        text = text.decode() if isinstance(text, bytes) else text
        out = []
        for line in text.strip().splitlines():
            f = line.split()
            out.append({"id": f[0], "port": f[1].split("@")[0].rsplit(":", 1)[1], "flags": f[2],
                        "master": f[3], "slots": " ".join(f[8:])})
        return out

    def masters(self) -> list[int]:
        return [int(n["port"]) for n in self.nodes()
                if "master" in n["flags"] and "fail" not in n["flags"] and n["slots"]]

    def owner(self, key: bytes | str) -> int:
        """The port of the master serving ``key``'s slot now."""
        with self.node(self.masters()[0]) as r:
            slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
        for n in self.nodes():
            if "master" in n["flags"] and "fail" not in n["flags"] and _serves(n["slots"], slot):
                return int(n["port"])
        raise RuntimeError(f"no master serves slot {slot}")

    def owner_of_slot(self, slot: int) -> int:
        for n in self.nodes():
            if "master" in n["flags"] and "fail" not in n["flags"] and _serves(n["slots"], slot):
                return int(n["port"])
        raise RuntimeError(f"no master serves slot {slot}")

    def slot(self, key: bytes | str) -> int:
        with self.node(self.masters()[0]) as r:
            return int(r.execute_command("CLUSTER", "KEYSLOT", key))

    def wait_failover(self, dead_port: int, timeout_s: float = 30.0) -> float:
        """After :meth:`kill` of a master: wait until another node serves its slots and the
        cluster is ok again; returns the seconds waited."""
        t0 = time.monotonic()
        while True:
            try:
                if dead_port not in self.masters() and self.healthy():
                    return time.monotonic() - t0
            except (sync_redis.RedisError, RuntimeError):
                pass
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"no failover after {timeout_s} s: {self.nodes()}")
            time.sleep(0.05)

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok and three masters serve all slots."""
        try:
            for port, proc in self.procs.items():
                if proc.poll() is None:
                    with self.node(port) as r:
                        if b"cluster_state:ok" not in r.execute_command("CLUSTER", "INFO"):
                            return False
            return len(self.masters()) == 3
        except (sync_redis.RedisError, RuntimeError):
            return False

    def wait_healthy(self, timeout_s: float = 30.0) -> float:
        """Wait until :meth:`healthy`; returns the seconds waited."""
        t0 = time.monotonic()
        while not self.healthy():
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"cluster not healthy after {timeout_s} s: {self.nodes()}")
            time.sleep(0.1)
        return time.monotonic() - t0

    def kill(self, port: int) -> None:
        """SIGKILL one node (no chance to hand anything over)."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def revive(self, port: int) -> None:
        """Start a killed node again (it rejoins as a replica of whoever took over)."""
        self._start_node(port)
        self._wait_ping(port)

    def reshard(self, from_port: int, to_port: int, slots: int) -> None:
        """Move ``slots`` slots (and their keys) from one master to another, live."""
        ids = {int(n["port"]): n["id"] for n in self.nodes()}
        subprocess.run([self.cli, "--cluster", "reshard", f"127.0.0.1:{to_port}",
                        "--cluster-from", ids[from_port], "--cluster-to", ids[to_port],
                        "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "10"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def move_slot(self, slot: int, to_port: int, *, pause_s: float = 0.0) -> int:
        """Migrate one slot to ``to_port``'s master, key by key (``pause_s`` between keys keeps
        the slot half-moved for a while: clients get ASK for moved keys, then MOVED). Returns the
        number of keys moved."""
        src_port = next(int(n["port"]) for n in self.nodes() if "master" in n["flags"]
                        and "fail" not in n["flags"] and _serves(n["slots"], slot))
        if src_port == to_port:
            return 0
        ids = {int(n["port"]): n["id"] for n in self.nodes()}
        with self.node(src_port) as src, self.node(to_port) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src_port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to_port])
            moved = 0
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
                src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                time.sleep(pause_s)
            for port in self.masters():
                with self.node(port) as r:
                    r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])
        return moved

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)
        self.procs.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

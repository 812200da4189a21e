"""Apache Kafka in KRaft mode on loopback: one node, or a three-node cluster, for tests and benchmarks.

Every node is a combined broker and controller (``process.roles=broker,controller``) started with
``java -cp <cache>/libs/* kafka.Kafka server.properties`` after its storage was formatted with
``kafka.tools.StorageTool format`` (the same classes the distribution's scripts call). Ports are
free loopback ports chosen at start; every process is stopped by the PID it was started with.

Test-friendly settings: no initial rebalance delay, internal topics replicated to the cluster's
size (one node: factor 1), small segments, a bounded heap, and a restarted node made the preferred
leader again within seconds (a killed one is fenced after Kafka's default 9 s). Start-up has a deadline; a
failure says why in one message, with the tail of the node's log.
"""

from __future__ import annotations

import base64
import concurrent.futures
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from gateway.kafka.embedded import end_process
from testkit.brokers.runtime import KAFKA_VERSION, KafkaUnavailable, classpath, java_binary

HOST = "127.0.0.1"
HEAP = ("-Xms128m", "-Xmx512m")
_LOG4J = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


@dataclass(frozen=True)
class Listener:
    """A client listener beside the plaintext one: its name, security protocol and own settings
    (written as ``listener.name.<name>.<key>``)."""

    name: str
    protocol: str
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass
class KafkaNode:
    """One broker+controller process."""

    node_id: int
    folder: Path
    ports: dict[str, int]
    controller_port: int
    _proc: subprocess.Popen[bytes] | None = None
    _log: BinaryIO | None = None

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def address(self, listener: str = "PLAINTEXT") -> str:
        return f"{HOST}:{self.ports[listener]}"

    def launch(self, java: str, cp: str) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the node writes to it until it stops
        self._proc = subprocess.Popen(
            [java, *HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}", "-cp", cp, "kafka.Kafka",
             str(self.folder / "server.properties")],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def kill(self) -> None:
        """``kill -9`` by PID: no shutdown, no goodbye to the controller."""
        self._end(10, signal.SIGKILL)

    def stop(self, timeout_s: float = 20.0) -> None:
        self._end(timeout_s, signal.SIGTERM)

    def _end(self, timeout_s: float, sig: int) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, timeout_s, sig)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


class KafkaCluster:
    """``with KafkaCluster() as kafka: kafka.bootstrap``: one node by default, or ``nodes=3``.

    ``listeners`` add secured client listeners (``address(name)``); ``scram_users`` are
    ``(mechanism, user, password)`` created when the storage is formatted; ``settings`` override
    any broker setting. ``log_path`` (for one node) is where the node's log is copied on stop.
    """

    def __init__(self, nodes: int = 1, *, listeners: Sequence[Listener] = (),
                 settings: Mapping[str, str] | None = None,
                 scram_users: Sequence[tuple[str, str, str]] = (),
                 workdir: Path | None = None, log_path: Path | None = None) -> None:
        self.size = nodes
        self.listeners = list(listeners)
        self.settings = dict(settings or {})
        self.scram_users = list(scram_users)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kafka-"))
        self.log_path = log_path
        # Kafka's cluster id format; it may start with "-", hence "--cluster-id=ID" when formatting.
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.nodes: list[KafkaNode] = []
        self._java = ""
        self._classpath = ""

    # ---- what tests use -----------------------------------------------------------------

    kind = "kafka"
    version = KAFKA_VERSION

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address() for node in self.nodes)

    def address(self, listener: str) -> str:
        """Bootstrap servers of one listener (``PLAINTEXT`` or an added one's name)."""
        return ",".join(node.address(listener) for node in self.nodes)

    @property
    def pid(self) -> int | None:
        """The first node's PID (the only one in a single-node cluster)."""
        return self.nodes[0].pid if self.nodes else None

    def node(self, node_id: int) -> KafkaNode:
        return next(node for node in self.nodes if node.node_id == node_id)

    def log_tail(self, lines: int = 8) -> str:
        return " || ".join(f"node {n.node_id}: {n.log_tail(lines)}" for n in self.nodes)

    # ---- lifecycle ----------------------------------------------------------------------

    def plan(self) -> KafkaCluster:
        """Choose the nodes' ports without starting them: ``bootstrap`` is known before the
        cluster runs (a client started before its broker). ``start()`` then uses these ports."""
        if not self.nodes:
            self.nodes = [self._plan(node_id) for node_id in range(1, self.size + 1)]
        return self

    def start(self, timeout_s: float = 120.0) -> KafkaCluster:
        self._java = java_binary()
        self._classpath = classpath()
        self.plan()
        for node in self.nodes:
            for port in (*node.ports.values(), node.controller_port):
                if _port_in_use(port):
                    raise KafkaUnavailable(f"port {HOST}:{port} is already in use")
            self._write_config(node)
        self._format()
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            node.launch(self._java, self._classpath)
        try:
            self.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, node_id: int, timeout_s: float = 90.0) -> None:
        """Start a stopped or killed node again on its ports and data (no new format)."""
        node = self.node(node_id)
        if not node.running():
            node.launch(self._java, self._classpath)
        self.wait_ready(time.monotonic() + timeout_s)

    def wait_ready(self, deadline: float) -> None:
        """Until every running node is registered and unfenced (seen in cluster metadata)."""
        from testkit.brokers.admin import registered_brokers

        expected = {node.node_id for node in self.nodes if node.running()}
        while True:
            for node in self.nodes:
                if node._proc is not None and node._proc.poll() is not None:
                    raise KafkaUnavailable(f"Apache Kafka node {node.node_id} exited with status "
                                           f"{node._proc.returncode}: {node.log_tail()}")
            up = [n.address() for n in self.nodes if n.running() and _port_in_use(n.ports["PLAINTEXT"])]
            seen: set[int] = set()
            if up:
                with concurrent.futures.ThreadPoolExecutor(1) as pool:  # callers may run an event loop
                    seen = pool.submit(registered_brokers, ",".join(up), 3.0).result()
            if expected <= seen:
                return
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"Apache Kafka did not become ready on {self.bootstrap} in time "
                                       f"(brokers seen: {sorted(seen)}): {self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        # A node of a multi-node cluster would wait for its partitions to move away; the data is
        # thrown away, so it gets a few seconds, then SIGKILL.
        for node in self.nodes:
            node.stop(20.0 if self.size == 1 else 3.0)
        if self.log_path is not None and self.nodes:
            with open(self.log_path, "ab") as out:
                for node in self.nodes:
                    if node.log_path.exists():
                        out.write(node.log_path.read_bytes())
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- configuration ------------------------------------------------------------------

    def _plan(self, node_id: int) -> KafkaNode:
        ports = {"PLAINTEXT": free_port(), **{listener.name: free_port() for listener in self.listeners}}
        return KafkaNode(node_id, self.workdir / f"node-{node_id}", ports, free_port())

    def properties(self, node: KafkaNode) -> dict[str, str]:
        replicas = str(min(self.size, 3))
        isr = "2" if self.size >= 3 else "1"
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)
        names = ["PLAINTEXT", *(listener.name for listener in self.listeners)]
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT",
                     **{listener.name: listener.protocol for listener in self.listeners}}
        found = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join([*(f"{name}://{node.address(name)}" for name in names),
                                   f"CONTROLLER://{HOST}:{node.controller_port}"]),
            "advertised.listeners": ",".join(f"{name}://{node.address(name)}" for name in names),
            "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocols.items()),
            "log.dirs": str(node.folder / "data"),
            "num.partitions": "1",
            "default.replication.factor": replicas,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": isr,
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": isr,
            "group.initial.rebalance.delay.ms": "0",
            # The benchmarks' smoke runs use a 2 s session timeout (Kafka's minimum is 6 s).
            "group.min.session.timeout.ms": "1000",
            # Records up to the gateway producer's 4 MiB request size (the hostile-input scenario
            # feeds 1 MB values; Kafka's default limit is 1 MiB per record batch).
            "message.max.bytes": str(5 * 1048576),
            "replica.fetch.max.bytes": str(5 * 1048576),
            "log.segment.bytes": str(16 * 1048576),
            "log.retention.check.interval.ms": "60000",
            # No time-based deletion: some tests stamp records in the past (2023), and a retention
            # check between producing and reading them would move the log start past them.
            "log.retention.ms": "-1",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            # A killed node is fenced (its partitions get new leaders) after Kafka's default
            # broker.session.timeout.ms, 9 s, as in production; a restarted one leads again soon.
            "leader.imbalance.check.interval.seconds": "5",
        }
        for listener in self.listeners:
            for key, value in listener.settings.items():
                found[f"listener.name.{listener.name.lower()}.{key}"] = value
        found.update(self.settings)
        return found

    def _write_config(self, node: KafkaNode) -> None:
        node.folder.mkdir(parents=True, exist_ok=True)
        (node.folder / "log4j2.properties").write_text(_LOG4J)
        text = "".join(f"{key}={value}\n" for key, value in self.properties(node).items())
        (node.folder / "server.properties").write_text(text)

    def _format(self, timeout_s: float = 120.0) -> None:
        """``StorageTool format`` for every node at once (one JVM each), SCRAM users included."""
        scram = [arg for mechanism, user, password in self.scram_users
                 for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")]
        procs = []
        for node in self.nodes:
            command = [self._java, "-Xmx256m", f"-Dlog4j2.configurationFile={node.folder / 'log4j2.properties'}",
                       "-cp", self._classpath, "kafka.tools.StorageTool", "format", "--config",
                       str(node.folder / "server.properties"), f"--cluster-id={self.cluster_id}", *scram]
            procs.append((node, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL)))
        for node, proc in procs:
            try:
                out, _ = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise KafkaUnavailable(f"formatting node {node.node_id}'s storage took over {timeout_s:.0f}s") from None
            if proc.returncode != 0:
                tail = " | ".join(out.decode(errors="replace").strip().splitlines()[-5:])
                raise KafkaUnavailable(f"formatting node {node.node_id}'s storage failed: {tail}")

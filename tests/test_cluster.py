"""A real two-node Ray cluster on this machine (a head and a worker node started with `ray start`,
token auth on, one CPU each, on loopback ports picked here): `fernas evolve --address
--storage` runs trials on both nodes (successive halving: promotions continue from checkpoints
in OUT, which both nodes reach); the worker node is killed (kill -9 of its processes) in
the middle of the run and the driver after it; `--resume` against the same cluster finishes
the run without losing or retraining a completed trial.  The nodes are stopped by process id."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fernas import genome as G

from test_search import descendants, read_trials, tiny_genome

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One `ray start --block` in its own session; `kill()` ends it and every process below it."""

    def __init__(self, *args: str, log: Path):
        self.log = log.open("w")
        self.proc = subprocess.Popen([RAY, "start", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--block", *args],
                                     env=ENV, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids: set[int] = set()

    def watch(self) -> None:  # remember the processes it started, to kill them by id
        self.pids |= descendants(self.proc.pid) | {self.proc.pid}

    def kill(self) -> None:
        self.watch()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(timeout=30)
        self.log.close()


def alive_nodes(address: str) -> int:
    code = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    return int(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 and res.stdout.strip() else 0


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = Node("--head", f"--port={port}", "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
                log=tmp_path / "head.log")
    nodes = [head]
    try:
        wait_for(lambda: alive_nodes(address) == 1, 90, "the head node")
        worker = Node(f"--address={address}", log=tmp_path / "worker.log")
        nodes.append(worker)
        wait_for(lambda: alive_nodes(address) == 2, 90, "the worker node to join")
        for n in nodes:
            n.watch()
        yield address, head, worker
    finally:
        for n in reversed(nodes):
            n.kill()


# Long enough that the worker node's first trial actor is up (several seconds on a busy CI
# machine) before the search ends: with sub-second trials the head's actor can take every trial.
GENERATIONS = 10


def completed(out: Path) -> list[dict]:
    return [r for r in read_trials(out) if r["status"] in ("ok", "failed")]


def test_evolve_on_a_two_node_cluster_survives_a_lost_node_and_a_killed_driver(cluster, tmp_path):
    address, head, worker = cluster
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for w in (16, 24, 32):
        d = tiny_genome(w)
        G.save_genome(d, seeds / f"{d['name']}.json")
    # every node is asked whether it sees a path (a run directory on a shared file system)
    code = (f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "from fernas.search.cluster import nodes_without; "
            f"print(json.dumps([nodes_without({str(tmp_path)!r}), nodes_without({str(tmp_path / 'nowhere')!r})]))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    (seen, silent), (unseen, silent2) = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen == silent == silent2 == [] and len(unseen) == 2 and all(len(n) == 12 for n in unseen), res.stdout
    out = tmp_path / "run"
    args = [sys.executable, "-m", "fernas", "evolve", "--address", address, "--storage", str(tmp_path / "storage"),
            "--data", "demo:280,70,70", "--seed-genomes", str(seeds / "*.json"), "--pop", "4",
            "--generations", str(GENERATIONS), "--min-budget", "1", "--max-budget", "2", "--eta", "2",
            "--max-steps-per-epoch", "4", "--rerank-top", "0",
            "--max-mmacs", "60", "--seed", "2", "--out", str(out)]
    log = tmp_path / "driver.log"  # its tail says why, when the run ends (or dies) too soon
    with log.open("w") as fh:
        driver = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=fh, stderr=subprocess.STDOUT)

    def ended(before: str) -> str:
        return f"the run ended (exit {driver.returncode}) before {before}: {log.read_text()[-1500:]}"

    try:
        # 1. trials run on both nodes
        wait_for(lambda: len({r["node"] for r in completed(out)}) == 2 or driver.poll() is not None, 240,
                 "trials on both nodes")
        assert driver.poll() is None, ended("the worker node could be killed")
        worker.watch()
        before_node_loss = {(r["gid"], r["budget"], r["kind"]): r["trial_id"] for r in completed(out)}
        # 2. the worker node dies (kill -9 of its raylet and everything below it) in mid-run
        worker.kill()
        n = len(completed(out))
        wait_for(lambda: len(completed(out)) >= n + 2 or driver.poll() is not None, 240, "trials after the node loss")
        assert driver.poll() is None, ended("its driver could be killed")
        # 3. then the driver dies too
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    before_resume = {(r["gid"], r["budget"], r["kind"]): r["trial_id"] for r in completed(out)}

    res = subprocess.run([*args, "--resume"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming" in res.stdout and "cluster " + address in res.stdout
    rows = read_trials(out)
    keys = [(r["gid"], r["budget"], r["kind"]) for r in rows]
    assert len(keys) == len(set(keys)), "a genome was trained twice at one budget"
    done = {(r["gid"], r["budget"], r["kind"]): r["trial_id"] for r in rows}
    for key, trial in {**before_node_loss, **before_resume}.items():  # no completed trial lost or retrained
        assert done[key] == trial, key
    assert len({r["node"] for r in rows if r["status"] == "ok"}) == 2
    # promotions continued from checkpoints in OUT, which both nodes reach
    assert any(r["kind"] == "promotion" and r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["status"] in ("ok", "failed", "skipped"), r
        if r["status"] == "failed":
            assert r["error"], r  # a trial the node took with it: penalised with its reason
    with (out / "logbook.csv").open() as fh:
        assert len(fh.read().strip().splitlines()) == 1 + GENERATIONS  # header + every generation
    for name in ("best.json", "report.html", "pareto.csv", "progress.png"):
        assert (out / name).is_file(), name


def test_a_run_directory_a_node_does_not_see_is_refused(tmp_path, monkeypatch):
    """`check_out_shared` on the verdicts of `nodes_without` (the real one is run above): a node
    that does not see OUT refuses the run in one line; one that did not answer is a warning."""
    from fernas.errors import UserError
    from fernas.search import cluster

    lines, asked = [], []

    def verdicts(missing, silent):
        def nodes_without(path):
            asked.append(Path(path))
            assert Path(path).is_file() and Path(path).parent == tmp_path  # the marker exists while asked
            return missing, silent
        return nodes_without

    monkeypatch.setattr(cluster, "nodes_without", verdicts(["0123456789ab"], []))
    with pytest.raises(UserError, match=r"--out .*: not on a file system that Ray node\(s\) 0123456789ab share"):
        cluster.check_out_shared(tmp_path, lines.append)
    monkeypatch.setattr(cluster, "nodes_without", verdicts([], ["ba9876543210"]))
    cluster.check_out_shared(tmp_path, lines.append)
    assert len(lines) == 1 and "ba9876543210 did not say whether they see" in lines[0]
    assert not any(p.exists() for p in asked) and list(tmp_path.iterdir()) == []  # the markers are gone

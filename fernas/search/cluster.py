"""Ray: starting or joining a cluster, token auth, resources per trial, and Ray's private APIs.

The private Ray APIs fernas uses are the two below and, in `fernas.search.tuner`,
ASHAScheduler's `_trial_info` (`SearchASHA.on_trial_complete`) and
`ray.tune.execution.placement_groups.resource_dict_to_pg_factory` (`trial_resources`);
`tests/test_ray_private_api.py` fails loudly when a Ray release changes one of them.  Here:

* `ray._private.authentication.authentication_token_setup._enable_token_auth` -- turns token
  mode on for this process and the Ray processes it starts (setting `RAY_AUTH_MODE` after
  `import ray` is not enough: Ray caches its config, creates no token, and its GCS, which
  reads the variable, then insists on one).
* `ray.tune.utils.object_cache._ObjectCache` -- Tune's cache of idle trial actors (see
  `keep_idle_actors`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from pathlib import Path

from fernas.errors import ClusterUnreachable, SettingError
from fernas.search.options import EvolveOptions
from fernas.search.trial import FAULT_ENV

CONNECT_TIMEOUT_S = 30  # an unreachable --address fails within this


def check_address(address: str) -> None:
    """Fail fast (a few seconds) with what was tried when --address cannot be reached."""
    if address == "auto":
        return
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SettingError("address", repr(address), "expected auto, HOST:PORT or ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ClusterUnreachable("address", address, f"cannot connect to {host}:{port} ({exc})",
                           "start the head with `ray start --head` there, or leave out {name} for a local run") from None


def precheck_resources(opts: EvolveOptions) -> None:
    """Cheap checks before anything slow: a reachable --address, GPUs a local run can have."""
    if opts.address:
        check_address(opts.address)
        return
    if opts.gpus_per_trial != "auto":
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if float(opts.gpus_per_trial) > n:
            raise SettingError("gpus_per_trial", f"{float(opts.gpus_per_trial):g}", f"this machine has {n} GPU(s)",
                               "leave out {name} to train on CPUs" if n == 0 else "")
    if opts.cpus_per_trial > (os.cpu_count() or 1):
        raise SettingError("cpus_per_trial", f"{opts.cpus_per_trial:g}", f"this machine has {os.cpu_count()} CPU(s)")


def token_path() -> Path:
    """Where Ray reads its token: `RAY_AUTH_TOKEN_PATH`, else ~/.ray/auth_token."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def ensure_token_file() -> None:
    """Make Ray's token file when there is none, atomically and readable by this user only.
    Ray writes it in place: two searches (or two tests) starting at once on a fresh machine
    could each write another token and have their Ray processes refuse each other."""
    import secrets
    import tempfile

    path = token_path()
    if os.environ.get("RAY_AUTH_TOKEN") or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))  # as Ray makes one: 256 random bits in hex
        os.link(tmp, path)  # never replaces: when another process was first, its token stays
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def enable_token_auth() -> None:
    """Token mode for this process and the Ray processes it starts (a private Ray API)."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()


def _join(opts: EvolveOptions, level: int, env_vars: dict):
    """ray.init against --address, with a watchdog: Ray itself may wait for minutes."""
    import ray

    import fernas

    check_address(opts.address)
    if os.environ.get("RAY_AUTH_MODE") is None:
        enable_token_auth()  # a token-protected cluster refuses a driver without token mode
    # Ship this fernas to the cluster's workers (they may not have it installed).
    runtime_env = {"env_vars": env_vars, "py_modules": [str(Path(fernas.__file__).parent)]}
    done = threading.Event()

    def watchdog():
        if not done.wait(CONNECT_TIMEOUT_S):
            err = ClusterUnreachable("address", opts.address, f"Ray did not answer within {CONNECT_TIMEOUT_S} s")
            print(f"fernas: error: {err.as_flag()}", file=sys.stderr, flush=True)
            os._exit(err.status())
    threading.Thread(target=watchdog, daemon=True).start()
    try:
        return ray.init(address=opts.address, logging_level=level, log_to_driver=opts.verbose,
                        runtime_env=runtime_env)
    except Exception as exc:  # ConnectionError, auth errors, version mismatch
        raise ClusterUnreachable("address", opts.address, "cannot join the Ray cluster "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        done.set()


def connect_ray(opts: EvolveOptions) -> dict:
    """Start a local Ray (dashboard on 127.0.0.1, token auth on) or join --address."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep absolute paths
    level = logging.INFO if opts.verbose else logging.ERROR
    env_vars = {k: os.environ[k] for k in ("RAY_CHDIR_TO_TRIAL_DIR", FAULT_ENV, "RAY_USAGE_STATS_ENABLED")
                if k in os.environ}
    if opts.address:
        ctx, started = _join(opts, level, env_vars), False
    else:
        # A fresh local instance ("local": never join somebody else's `ray start` by accident).
        # Token auth stays on: Ray 2.60 enables it for new local clusters; we make sure.
        if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
            print("fernas: note: RAY_AUTH_MODE is not 'token'; keeping the dashboard's token check on",
                  file=sys.stderr)
        enable_token_auth()
        ensure_token_file()
        ctx = ray.init(address="local", include_dashboard=opts.dashboard, dashboard_host="127.0.0.1",
                       logging_level=level, log_to_driver=opts.verbose, runtime_env={"env_vars": env_vars})
        started = True
    res = ray.cluster_resources()
    url = getattr(ctx, "dashboard_url", None) or ""
    if url and not url.startswith("http"):
        url = "http://" + url
    return {"started_local": started, "address": opts.address or "local", "dashboard_url": url,
            "token_file": str(token_path()), "cpus": float(res.get("CPU", 0)), "gpus": float(res.get("GPU", 0)),
            "memory": float(res.get("memory", 0))}


def nodes_without(path: str, timeout_s: float = 30.0) -> tuple[list[str], list[str]]:
    """(the alive Ray nodes on which `path` does not exist, those that did not answer within
    `timeout_s`), by one task pinned to each node; nodes by the first 12 hex digits of their
    ids, as trials.csv's `node`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    exists = ray.remote(num_cpus=0, max_retries=0)(os.path.exists)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = {exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(path): n
            for n in nodes}
    done, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    missing, silent = [], [refs[r][:12] for r in pending]
    for ref in done:
        try:
            if not ray.get(ref):
                missing.append(refs[ref][:12])
        except Exception:  # the node was lost meanwhile: no verdict on it
            silent.append(refs[ref][:12])
    for ref in pending:
        ray.cancel(ref)
    return missing, silent


def check_out_shared(out: Path, say=print) -> None:
    """On a cluster every node's trials write under the run directory (the checkpoints that
    promotions continue, stuck-trial markers): refuse a run directory that some node does not
    see (its promotions would fail there as the genome's fault); `say` a warning line for the
    nodes that did not answer."""
    import secrets

    from fernas.errors import UserError

    marker = out.resolve() / f".fernas-node-check-{secrets.token_hex(4)}"
    marker.touch()
    try:
        missing, silent = nodes_without(str(marker))
    finally:
        marker.unlink(missing_ok=True)
    if silent:
        say(f"fernas: warning: Ray node(s) {', '.join(silent)} did not say whether they see {out}; on a cluster "
            "the run directory must be on the file system every node shares")
    if missing:
        raise UserError(f"--out {out}: not on a file system that Ray node(s) {', '.join(missing)} share with this "
                        "one (their trials write checkpoints and markers under it); put the run directory on "
                        "the shared file system, as --storage")


def resolve_resources(opts: EvolveOptions, ray_info: dict) -> tuple[float, float, int]:
    """(cpus, gpus per trial, concurrent trials); UserError when a trial cannot fit."""
    cpus, gpus = ray_info["cpus"], ray_info["gpus"]
    if opts.gpus_per_trial == "auto":
        gpt = 0.25 if gpus > 0 else 0.0  # four short trials share a card; CPUs when there is none
    else:
        gpt = float(opts.gpus_per_trial)
        if gpt > gpus:
            raise SettingError("gpus_per_trial", f"{gpt:g}", f"the Ray cluster has {gpus:g} GPU(s)",
                               "leave out {name} to train on CPUs" if gpus == 0 else "")
    cpt = float(opts.cpus_per_trial)
    if cpt > cpus:
        raise SettingError("cpus_per_trial", f"{cpt:g}", f"the Ray cluster has {cpus:g} CPU(s)")
    slots = int(cpus // cpt) if cpt > 0 else 10**6
    if gpt > 0:
        slots = min(slots, int(round(gpus / gpt, 6) // 1))
    slots = max(1, slots)
    if opts.max_concurrent > 0:
        slots = min(slots, opts.max_concurrent)
    return cpt, gpt, slots


@contextlib.contextmanager
def keep_idle_actors(n: int):
    """Let Tune keep up to `n` idle trial actors (one per slot) across a generation barrier.

    Tune caches a finished trial's actor for reuse only while trials are staged, plus one
    spare.  At a generation's end nothing is staged (the next generation needs the last
    fitness), so all but one actor stopped and the next generation started fresh worker
    processes: about 10 s per generation per slot here (torch import, data transfer).
    Patching the cache's keep-one rule to keep-n, for the duration of one `Tuner.fit`,
    removes that.
    """
    from ray.tune.utils.object_cache import _ObjectCache

    orig_cache, orig_flush = _ObjectCache.cache_object, _ObjectCache.flush_cached_objects

    def idle_only(cache) -> bool:  # nothing is staged, so Tune itself would keep at most one
        return cache._may_keep_one and not any(v for v in cache._max_num_objects.values())

    def cache_object(self, key, obj):
        if (idle_only(self) and len(self._cached_objects[key]) >= self._max_num_objects[key]
                and self._num_cached_objects < n):
            self._cached_objects[key].append(obj)
            self._num_cached_objects += 1
            return True
        return orig_cache(self, key, obj)

    def flush_cached_objects(self, force_all: bool = False):
        if not force_all and idle_only(self) and self._num_cached_objects <= n:
            return iter(())
        return orig_flush(self, force_all)

    _ObjectCache.cache_object, _ObjectCache.flush_cached_objects = cache_object, flush_cached_objects
    try:
        yield
    finally:
        _ObjectCache.cache_object, _ObjectCache.flush_cached_objects = orig_cache, orig_flush

"""The parse cache: a loaded dataset as a torch file keyed by the SHA-256 of its input and options.

Files live under ``~/.cache/fernas`` (``FERNAS_CACHE_DIR`` or ``cache_dir`` override) and are
written atomically.  To make a reload cheaper than hashing 290 MB again, the hash of a file is
memoised by (path, size, mtime), the way git's index does.  A corrupt or foreign cache file is
rebuilt, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from fernas.dataset import Dataset, Split
from fernas.io import atomic_torch_save, atomic_write_json

CACHE_VERSION = 3  # part of every key: raised when a loader reads the same file differently (2: deeper images
# scaled; 3: a FER2013 CSV's info names the Usage of val and test)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("FERNAS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fernas"


def file_hash(path: Path, root: Path) -> str:
    """SHA-256 of a file's content, memoised by (absolute path, size, mtime_ns)."""
    st = path.stat()
    memo_path = root / "hashes.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError, RecursionError):
        memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            h.update(block)
    digest = h.hexdigest()
    memo = {k: v for k, v in memo.items() if not k.startswith(f"{path.resolve()}|")}
    memo[key] = digest
    try:
        atomic_write_json(memo_path, memo)
    except OSError:
        pass  # a read-only cache only costs speed
    return digest


def cached(key_parts: dict, root: Path | None, build, source: str | None = None,
           paths: dict | None = None) -> Dataset:
    """Return the dataset cached under the hash of key_parts, or build() and cache it.

    The key holds content, not paths, so an entry may come from a copy of the same bytes under
    another name: on a hit `source` and the info entries in `paths` (e.g. path=, labels=) are
    the ones of this call, never the cached ones.
    """
    if root is None:
        return build()
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:32]
    path = root / f"{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            splits = [Split(blob[s]["x"], blob[s]["y"], blob[s].get("soft")) for s in ("train", "val", "test")]
            info = json.loads(blob["info"])
            info.update(paths or {}, cache="hit")
            return Dataset(blob["classes"], *splits, source=source or blob["source"], skipped=blob["skipped"],
                           info=info)
        except Exception:  # noqa: BLE001 - a corrupt or foreign cache file is rebuilt, never fatal
            pass
    ds = build()
    blob = {"classes": ds.classes, "source": ds.source, "skipped": ds.skipped, "info": json.dumps(ds.info)}
    for name, sp in ds.splits().items():
        blob[name] = {"x": sp.x.contiguous(), "y": sp.y}
        if sp.soft is not None:
            blob[name]["soft"] = sp.soft
    try:
        atomic_torch_save(blob, path)
    except OSError:
        pass
    ds.info["cache"] = "miss"
    return ds

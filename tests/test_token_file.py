"""Ray's token file, made by fernas before a local Ray starts: atomically, once, for this user
only, and the same token for searches (or tests) that start at the same moment."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

from fernas.search.cluster import ensure_token_file


def test_the_token_file_is_made_once_and_kept(tmp_path, monkeypatch):
    path = tmp_path / "ray" / "auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    ensure_token_file()
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0 and stat.S_IMODE(path.stat().st_mode) == 0o600
    ensure_token_file()
    assert path.read_text() == token and os.listdir(path.parent) == ["auth_token"]


def test_searches_starting_together_agree_on_one_token(tmp_path):
    path = tmp_path / "auth_token"
    env = {**os.environ, "RAY_AUTH_TOKEN_PATH": str(path)}
    env.pop("RAY_AUTH_TOKEN", None)
    code = ("import sys, time; from fernas.search.cluster import ensure_token_file; "
            "time.sleep(max(0.0, float(sys.argv[1]) - time.time())); ensure_token_file(); print(open(sys.argv[2]).read())")
    start = time.time() + 5  # each process imports first, then all write at this moment
    procs = [subprocess.Popen([sys.executable, "-c", code, str(start), str(path)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(6)]
    seen = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert seen == {path.read_text()} and os.listdir(tmp_path) == ["auth_token"]

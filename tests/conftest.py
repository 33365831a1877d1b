"""Shared test set-up: CPU only, few threads, no Ray usage stats, cache under tmp."""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENOMES = os.path.join(REPO, "genomes")


@pytest.fixture(autouse=True)
def _fernas_cache(tmp_path_factory, monkeypatch):
    """Keep every test's parsed-data cache out of the user's home directory."""
    monkeypatch.setenv("FERNAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fernas-cache"))


def pytest_configure(config):
    """Ray's token file before any test (or xdist worker) starts a Ray: made once, here."""
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        from fernas.search.cluster import ensure_token_file

        ensure_token_file()

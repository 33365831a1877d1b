"""benchmarks/augment_ab.py: the augmentation of another revision loads beside today's and both are timed."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import augment_ab  # noqa: E402
from fernas import augment  # noqa: E402


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="a copy of the tree without its git history")
def test_a_revision_s_module_loads_apart_and_both_are_timed():
    then = augment_ab._module_at("HEAD")
    assert then is not augment and then.__name__ == "augment_then" and hasattr(then, "augment_batch")
    rows = augment_ab.compare(then, augment, batches=(4,), rounds=1)
    assert set(rows) == {"batch 4, 1 crop", "batch 4, 10 crops"}
    assert all(r["then_img_per_s"] > 0 and r["now_img_per_s"] > 0 and r["now_over_then"] > 0 for r in rows.values())

"""What a command line needs to know about the built-in demo faces (their difficulties, default
sizes and limits), apart from `fernas.demo_faces`, which draws them with torch: `fernas --help`
and every command parse without importing torch."""

from __future__ import annotations

# Default sizes: big enough that search trials rank architectures, small enough that a
# few-epoch trial of a small CNN takes seconds on two CPU cores (see benchmarks/demo_difficulty.py).
DEFAULT_SIZES = (3500, 700, 700)
DIFFICULTY_NAMES = ("standard", "hard")  # the keys of `demo_faces.DIFFICULTIES`
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1  # the seeds every generator fernas seeds takes as they are
# Demo faces per split: they are drawn into memory (48 * 48 = 2,304 bytes each, so 2.3 GB per
# split at the cap, and about 3 minutes of drawing on two cores); FER2013 has 35,887 in all.
MAX_DEMO_IMAGES = 1_000_000

"""Value types for flags that several commands share (argparse turns their errors into one
line and exit status 2)."""

from __future__ import annotations

import argparse

# numpy's seeds end here; the seeds derived from one (seed * 1,000,003 + k, seed + 1000 * k)
# stay inside torch's 64 bits
SEED_MAX = 2**32 - 1


def seed(text: str) -> int:
    """A random seed: an integer from 0 to SEED_MAX."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {SEED_MAX}, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {SEED_MAX}, got {text}")
    return value

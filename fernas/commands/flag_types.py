"""Value types for flags that several commands share (argparse turns their errors into one
line and exit status 2)."""

from __future__ import annotations

import argparse

# The seeds derived from a training seed (seed * 1,000,003 + k) must stay inside the 64 bits
# torch's generators take; numpy gets the seed modulo 2**32.  Negative seeds work as well.
SEED_LIMIT = 10**12


def seed(text: str) -> int:
    """A random seed: an integer from -SEED_LIMIT to SEED_LIMIT."""
    expected = f"expected an integer from -{SEED_LIMIT} to {SEED_LIMIT}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
    if not -SEED_LIMIT <= value <= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{expected}, got {text}")
    return value

"""`python -m fernas` is the same as the `fernas` console script."""
import sys

from fernas.cli import entry

sys.exit(entry())

"""Regenerate the "Every flag" blocks of README.md from the commands' real --help output.

Each `<details><summary><code>fernas CMD --help</code></summary>` block gets the text that
`fernas CMD --help` prints at 100 columns; a command without a block gets one after the last.

    .venv/bin/python tools/readme_help.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.cli import COMMAND_MODULES  # noqa: E402
from fernas.io import atomic_write_text  # noqa: E402

BLOCK = "<details><summary><code>fernas {cmd} --help</code></summary>\n\n```\n{text}```\n\n</details>\n"


def help_text(cmd: str) -> str:
    env = dict(os.environ, COLUMNS="100", RAY_USAGE_STATS_ENABLED="0")
    return subprocess.run([sys.executable, "-m", "fernas", cmd, "--help"], env=env, cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout


def main() -> int:
    readme = (ROOT / "README.md").read_text()
    pattern = r"<details><summary><code>fernas {} --help</code></summary>\n\n```\n.*?```\n\n</details>\n"
    for cmd in COMMAND_MODULES:
        block = BLOCK.format(cmd=cmd, text=help_text(cmd))
        found = re.search(pattern.format(re.escape(cmd)), readme, flags=re.S)
        if found:
            readme = readme[:found.start()] + block + readme[found.end():]
        else:
            last = list(re.finditer(r"</details>\n", readme))[-1]
            readme = readme[:last.end()] + "\n" + block + readme[last.end():]
    atomic_write_text(ROOT / "README.md", readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Headless Chromium for the report's test and the README's screenshots (Debian's `chromium`).

`render(url)` returns (DOM after the page's scripts ran, console errors); `screenshot(url,
png)` writes a PNG of the page.  Each call starts and ends its own browser process with a
private profile directory, so nothing is shared between calls.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

TIMEOUT_S = 120


def chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(url: str, *flags: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                               "--virtual-time-budget=5000", *flags, url],
                              capture_output=True, text=True, timeout=TIMEOUT_S)


def render(url: str) -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, console messages that report a JavaScript error)."""
    res = _run(url, "--dump-dom")
    errors = [ln for ln in res.stderr.splitlines() if re.search(r"CONSOLE.*(Uncaught|Error)", ln)]
    return res.stdout, errors


def screenshot(url: str, png, width: int = 1280, height: int = 2400) -> None:
    res = _run(url, f"--window-size={width},{height}", f"--screenshot={png}")
    if res.returncode != 0:
        raise RuntimeError(f"chromium failed ({res.returncode}): {res.stderr[-500:]}")


if __name__ == "__main__":  # python tools/browser.py URL OUT.png [WIDTH HEIGHT]
    import sys

    screenshot(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:5]))

"""Wheels to install fernas on a GPU machine that reaches no package index.

A lent or air-gapped GPU machine often has a Python with torch and the common scientific
stack, but not Ray or DEAP, and cannot download them. `build` (run here, where pip reaches an
index) downloads every wheel that fernas and its tests need, for the target's Python version on
Linux x86-64, except the heavy ones a PyTorch image carries (ON_TARGET), and packs them into
one file small enough to travel with the repository (`.gpu-kit/kit.tar.xz`, at most 56 MiB):

* Ray's wheel (about 80 MB) is slimmed to the parts fernas runs: its Java jar, RLlib, Serve,
  the LLM library and the dashboard's source maps are left out;
* every wheel is rewritten uncompressed, so that xz compresses across all of them (72 wheels,
  42.2 MiB for Python 3.12; Ray's wheel alone is 79 MB as downloaded);
* setuptools comes along, so the editable install builds without an index;
* `.gpu-kit/kit.json` lists the wheels and what the target must already have.

On the target, `make gpu-check-offline` unpacks the kit, installs fernas from it into the
target's `python3` (`pip install --no-index --find-links ... -e ".[test]"`: packages the target
already has at a fitting version are kept; one it lacks is named by pip) and runs
`benchmarks/gpu_check.py`.

    .venv/bin/python tools/gpu_kit.py build --python-version 3.12
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
# Heavy wheels (4-900 MB) that a PyTorch GPU image carries; fernas needs torch>=2.5,
# torchvision>=0.20 and any recent version of the rest.
ON_TARGET = {"torch", "torchvision", "numpy", "pandas", "pyarrow", "matplotlib", "fonttools", "pillow", "onnx",
             "onnxruntime", "sympy", "grpcio"}
# Parts of Ray's wheel that fernas never imports: Java workers, RLlib, Serve, the LLM library,
# and the dashboard's source maps. (Ray's `serve` console script stays declared and fails if run.)
RAY_LEFT_OUT = ("ray/jars/", "ray/rllib/", "ray/serve/", "ray/llm/")
RAY_LEFT_OUT_SUFFIX = (".js.map", ".css.map")
KIT_FILES = ("kit.tar.xz", "kit.json")


def requirements() -> list[str]:
    """fernas's requirements and its test extra, Ray pinned to the version here (fernas uses
    private APIs of one release), and the build system's, so `pip install -e` needs no index."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    meta = pyproject["project"]
    reqs = []
    for req in meta["dependencies"] + meta["optional-dependencies"]["test"]:
        extras = Requirement(req).extras
        if project_name(req) == "ray":
            req = f"ray[{','.join(sorted(extras))}]=={importlib.metadata.version('ray')}"
        reqs.append(req)
    return [r for r in reqs if project_name(r) not in ON_TARGET] + pyproject["build-system"]["requires"]


def project_name(text: str) -> str:
    """The canonical project name of a requirement (`ray[tune]>=2.60`) or a wheel's file name."""
    if text.endswith(".whl"):
        return canonicalize_name(parse_wheel_filename(text)[0])
    return canonicalize_name(Requirement(text).name)


def download(reqs: list[str], python_version: str, dest: Path) -> None:
    plats = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version",
           python_version, "--implementation", "cp", *plats, "--platform", "any", "-d", str(dest), *reqs]
    subprocess.run(cmd, check=True)


def _kept(name: str) -> bool:
    return not name.startswith(RAY_LEFT_OUT) and not name.endswith(RAY_LEFT_OUT_SUFFIX)


def rewrite_stored(wheel: Path) -> None:
    """Rewrite a wheel in place uncompressed (xz then compresses the kit whole); Ray's without
    RAY_LEFT_OUT, its RECORD listing only what stays."""
    slim = project_name(wheel.name) == "ray"
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if slim and not _kept(info.filename):
                continue
            data = src.read(info)
            if slim and info.filename.endswith(".dist-info/RECORD"):
                data = "".join(line for line in data.decode().splitlines(keepends=True)
                               if _kept(line.split(",")[0])).encode()
            dst.writestr(info, data, compress_type=zipfile.ZIP_STORED)
    tmp.replace(wheel)


def build(out: Path, python_version: str, max_mib: float) -> dict:
    """Write out/kit.tar.xz and out/kit.json. `out` must be new or hold only a kit; a failed
    build leaves an earlier kit whole."""
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - set(KIT_FILES)):
        raise SystemExit(f"gpu_kit: {out} holds other files than {' and '.join(KIT_FILES)}: give a new folder")
    staged = out.with_name(out.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    (staged / "wheels").mkdir(parents=True)
    try:
        download(requirements(), python_version, staged / "wheels")
        wheels = sorted((staged / "wheels").glob("*.whl"))
        for wheel in wheels:
            if project_name(wheel.name) in ON_TARGET:  # pulled in by a small one
                wheel.unlink()
            else:
                rewrite_stored(wheel)
        kept = sorted((staged / "wheels").glob("*.whl"))
        with lzma.open(staged / "kit.tar.xz", "wb", preset=9) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
            for wheel in kept:
                tar.add(wheel, arcname=wheel.name)
        mib = (staged / "kit.tar.xz").stat().st_size / 2**20
        if mib > max_mib:
            raise SystemExit(f"gpu_kit: kit.tar.xz is {mib:.1f} MiB, over --max-mib {max_mib}")
        info = {"python_version": python_version, "platforms": PLATFORMS, "kit_mib": round(mib, 1),
                "wheels": [w.name for w in kept], "expected_on_target": sorted(ON_TARGET),
                "ray_left_out": list(RAY_LEFT_OUT + RAY_LEFT_OUT_SUFFIX)}
        (staged / "kit.json").write_text(json.dumps(info, indent=1) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for name in KIT_FILES:  # kit.json last: it then describes the tarball beside it
            os.replace(staged / name, out / name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="download the wheels here and pack them")
    b.add_argument("--python-version", default="3.12", help="the target's Python, major.minor (default 3.12)")
    b.add_argument("--out", type=Path, default=ROOT / ".gpu-kit")
    b.add_argument("--max-mib", type=float, default=56.0,
                   help="refuse a larger kit (default 56: with the repository, under a 64 MiB transfer)")
    args = ap.parse_args(argv)
    info = build(args.out.resolve(), args.python_version, args.max_mib)
    print(f"gpu_kit: {len(info['wheels'])} wheels for Python {info['python_version']}, {info['kit_mib']} MiB in "
          f"{args.out / 'kit.tar.xz'}; the target must have: {', '.join(info['expected_on_target'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

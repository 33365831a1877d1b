"""tools/gpu_kit.py: the wheels that install fernas on a GPU machine without a package index.

The download itself (about 80 MB from the index) is not repeated here: `download` is replaced
by one that writes small wheels of the same names, and the rest (slimming Ray, rewriting
wheels uncompressed, the xz tarball, kit.json, a failed build leaving the old kit) runs as is.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_kit", ROOT / "tools" / "gpu_kit.py")
gpu_kit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_kit)

RAY_FILES = ["ray/__init__.py", "ray/jars/ray_dist.jar", "ray/rllib/algo.py", "ray/serve/api.py", "ray/llm/x.py",
             "ray/tune/__init__.py", "ray/dashboard/client/build/static/js/main.js",
             "ray/dashboard/client/build/static/js/main.js.map"]


def make_wheel(path: Path, files: list[str]) -> None:
    dist = path.name.split("-")[0] + "-" + path.name.split("-")[1] + ".dist-info"
    record = "".join(f"{f},sha256=x,1\n" for f in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.writestr(f, "payload " * 200)
        z.writestr(f"{dist}/RECORD", record)


def fake_download(reqs, python_version, dest):
    fake_download.asked = (list(reqs), python_version)
    make_wheel(dest / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl", RAY_FILES)
    make_wheel(dest / "deap-1.4.4-py3-none-any.whl", ["deap/__init__.py"])
    make_wheel(dest / "numpy-2.5.5-cp312-cp312-manylinux_2_28_x86_64.whl", ["numpy/__init__.py"])


def test_requirements_leave_torch_to_the_target_and_pin_ray():
    reqs = gpu_kit.requirements()
    names = {gpu_kit.project_name(r) for r in reqs}
    assert not names & {"torch", "torchvision", "numpy", "pandas", "pyarrow"}
    assert {"deap", "ray", "pytest", "setuptools", "tqdm"} <= names
    ray = next(r for r in reqs if r.startswith("ray"))
    assert ray.startswith("ray[default,tune]==2.")  # fernas uses private APIs of one release


@pytest.mark.parametrize("text,name", [("ray[tune,default]>=2.60", "ray"), ("torch>=2.5", "torch"),
                                       ("setuptools>=68", "setuptools"),
                                       ("py_spy-0.4.3-py2.py3-none-manylinux1_x86_64.whl", "py-spy"),
                                       ("typing-extensions>=4.4; python_version < '3.13'", "typing-extensions"),
                                       ("ruamel.yaml>=0.18", "ruamel-yaml"), ("PyYAML==6.0", "pyyaml")])
def test_project_name(text, name):
    assert gpu_kit.project_name(text) == name


def test_build_slims_ray_and_packs_stored_wheels(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_kit, "download", fake_download)
    info = gpu_kit.build(tmp_path / "kit", "3.12", max_mib=56)
    assert fake_download.asked[1] == "3.12"
    assert sorted(info["wheels"]) == ["deap-1.4.4-py3-none-any.whl", "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl"]
    assert "numpy" in info["expected_on_target"]  # pulled in, left to the target
    assert json.loads((tmp_path / "kit" / "kit.json").read_text()) == info
    assert sorted(p.name for p in (tmp_path / "kit").iterdir()) == ["kit.json", "kit.tar.xz"]
    with tarfile.open(tmp_path / "kit" / "kit.tar.xz") as tar:
        wheels = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert sorted(wheels) == sorted(info["wheels"])
    with zipfile.ZipFile(io.BytesIO(wheels["ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl"])) as z:
        names = z.namelist()
        record = z.read("ray-2.60.0.dist-info/RECORD").decode()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert sorted(n for n in names if not n.endswith("RECORD")) == [
        "ray/__init__.py", "ray/dashboard/client/build/static/js/main.js", "ray/tune/__init__.py"]
    assert "jars" not in record and "rllib" not in record and ".js.map" not in record
    assert "ray/tune/__init__.py" in record


def test_build_refuses_a_folder_that_holds_more_than_a_kit(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_kit, "download", fake_download)
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "README.md").write_text("mine")
    with pytest.raises(SystemExit, match="holds other files"):
        gpu_kit.build(tmp_path / "repo", "3.12", max_mib=56)
    assert (tmp_path / "repo" / "README.md").read_text() == "mine"
    gpu_kit.build(tmp_path / "kit", "3.12", max_mib=56)
    gpu_kit.build(tmp_path / "kit", "3.12", max_mib=56)  # an earlier kit is replaced
    assert sorted(p.name for p in (tmp_path / "kit").iterdir()) == ["kit.json", "kit.tar.xz"]


def test_a_failed_build_leaves_the_earlier_kit(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_kit, "download", fake_download)
    gpu_kit.build(tmp_path / "kit", "3.12", max_mib=56)
    before = (tmp_path / "kit" / "kit.tar.xz").read_bytes()
    with pytest.raises(SystemExit, match="over --max-mib"):
        gpu_kit.build(tmp_path / "kit", "3.12", max_mib=0.0)

    def broken(reqs, python_version, dest):
        raise subprocess.CalledProcessError(1, ["pip", "download"])

    monkeypatch.setattr(gpu_kit, "download", broken)
    with pytest.raises(subprocess.CalledProcessError):
        gpu_kit.build(tmp_path / "kit", "3.12", max_mib=56)
    assert (tmp_path / "kit" / "kit.tar.xz").read_bytes() == before
    assert not (tmp_path / "kit.partial").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_offline_check_without_a_kit_says_how_to_make_one(tmp_path):
    res = subprocess.run(["make", "-s", "gpu-check-offline", f"GPU_KIT={tmp_path / 'none'}"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "make gpu-kit" in res.stderr

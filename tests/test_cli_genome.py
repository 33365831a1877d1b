"""CLI smoke tests for `fernas genome` and `fernas decode` (summary mode)."""

import json
import subprocess
import sys

import pytest

from fernas.cli import main
from conftest import GENOMES


def test_decode_table(capsys):
    assert main(["decode", f"{GENOMES}/vgg_khaireddin.json"]) == 0
    out = capsys.readouterr().out
    assert "total parameters: 29,890,759" in out
    assert "multiply-adds per image" in out and "optimizer nesterov" in out
    assert "stage3_pool" in out and "512x2x2" in out


def test_decode_json_several(capsys):
    assert main(["decode", "--json", f"{GENOMES}/vgg_khaireddin.json", f"{GENOMES}/daocong_mobilenetv2.json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["params"] for o in objs] == [29_890_759, 783_879]
    assert all(o["macs"] > 0 for o in objs)


def test_genome_random_is_valid_and_seeded(capsys, tmp_path):
    assert main(["genome", "random", "--seed", "4"]) == 0
    a = capsys.readouterr().out
    assert main(["genome", "random", "--seed", "4"]) == 0
    assert capsys.readouterr().out == a
    p = tmp_path / "r.json"
    p.write_text(a)
    assert main(["decode", str(p)]) == 0


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{", "invalid JSON"),
    ('{"fernas_genome": 1}', "missing key 'stages'"),
])
def test_decode_bad_input_one_line_exit_2(tmp_path, content, message):
    p = tmp_path / "g.json"
    if content is not None:
        p.write_text(content)
    r = subprocess.run([sys.executable, "-m", "fernas", "decode", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert message in r.stderr and str(p) in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _deep(path):
    path.write_text("[" * 100_000 + "]" * 100_000)


def _with_evolve_5(path):
    doc = json.load(open(f"{GENOMES}/vgg_khaireddin.json"))
    path.write_text(json.dumps({**doc, "evolve": 5}))


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("null"), "expected an object, found null"),
    (_deep, "invalid JSON: nested too deeply"),
    (_with_evolve_5, "evolve: expected an object, found number"),
])
def test_genome_check_bad_files_one_line_exit_2(tmp_path, make, message):
    p = tmp_path / "g.json"
    make(p)
    r = subprocess.run([sys.executable, "-m", "fernas", "genome", "check", str(p)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"fernas: error: {p}: ") and message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_decode_refuses_training_flags_without_train(capsys):
    assert main(["decode", f"{GENOMES}/vgg_khaireddin.json", "--epochs", "5"]) == 2
    assert "--epochs only applies with --train" in capsys.readouterr().err

"""`fernas decode --train`, `fernas train`, `fernas evaluate` and `fernas predict` end to end on tiny demo data."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest
import torch
from PIL import Image

from fernas.cli import main

TINY = {"fernas_genome": 1, "name": "tiny",
        "stages": [{"block": "conv", "repeats": 1, "width": w, "kernel": 3, "dropout": 0.0, "pool": "max"}
                   for w in (16, 32, 64)],
        "head": {"reduce": "flatten", "fc": []},
        "train": {"optimizer": "adam", "lr": 0.002, "weight_decay": 0.0, "scheduler": "constant", "batch_size": 32}}
FAST = ["--data", "demo:280", "--train-crops", "1", "--augment", "none", "--device", "cpu"]
RUN_FILES = ["genome.json", "config.json", "history.csv", "model.pt", "metrics.json", "curves.png",
             "confusion.png", "saliency.png", "model-tencrop.onnx"]


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def genome_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("genomes") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


@pytest.fixture(scope="module")
def run_dir(genome_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny-run"
    rc, stdout, err = cli("decode", genome_file, "--train", "--epochs", 2, "--fine-tune-epochs", 1, "--out", out, *FAST)
    assert rc == 0, err
    # trained on centre crops only (FAST): the ten-crop figure is said not to be the one to compare
    assert "trained on the centre crop alone" in stdout and "single-crop accuracy is the one to compare" in stdout
    return out


def test_decode_train_writes_every_file(run_dir):
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob("checkpoint-*.pt"))  # removed once the run is complete
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_accuracy_tencrop", "test_accuracy_single", "macro_f1", "per_class", "confusion",
                "params", "macs"):
        assert key in m, key
    # 280 training images at batch 32: 8 full batches an epoch (the remainder is dropped), 3 epochs
    assert m["train_inputs"] == 3 * 8 * 32 and m["train_compute"] == m["train_inputs"] * m["macs"]
    cm = m["confusion"]
    assert m["test_accuracy_tencrop"] == pytest.approx(sum(cm[i][i] for i in range(7)) / m["n_test"])
    assert len(m["per_class"]) == 7 and set(m["per_class"]["happy"]) >= {"precision", "recall", "f1"}
    assert sum(map(sum, m["confusion"])) == m["n_test"]
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [(r["phase"], r["epoch"]) for r in rows] == [("train", "1"), ("train", "2"), ("finetune", "1")]
    assert float(rows[2]["lr"]) == pytest.approx(1e-4)  # the paper's fine-tuning rate
    assert set(rows[0]) == {"phase", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["seed"] == 0 and cfg["device"] == "cpu" and cfg["versions"]["torch"] == torch.__version__
    assert cfg["args"]["epochs"] == 2 and cfg["data"]["train"] == 280 and cfg["args"]["augment_warmup"] == 8
    # model.pt is a plain dict: genome + weights, readable without unpickling code
    obj = torch.load(run_dir / "model.pt", weights_only=True)
    assert obj["genome"]["name"] == "tiny" and "state_dict" in obj
    # the run's ONNX program is the ten-crop one the test accuracy was measured with
    from fernas.export import OnnxClassifier
    from fernas.modelfile import load_model_file
    from fernas.evaluate import predict_proba

    clf = OnnxClassifier(run_dir / "model-tencrop.onnx")
    assert clf.crops == 10 and clf.meta["genome"] == "tiny" and len(clf.classes) == 7
    x = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    want = predict_proba(load_model_file(run_dir / "model.pt")[1], x, crops=10)
    assert torch.allclose(torch.from_numpy(clf.predict_proba(x)), want, atol=1e-4)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load is deprecated upstream
def test_export_command_formats_variants_and_refusals(run_dir, tmp_path):
    from fernas.export import OnnxClassifier

    model = run_dir / "model.pt"
    rc, out, err = cli("export", model, "--out", tmp_path / "single.onnx")
    assert rc == 0 and "centre crop" in out and "checked against PyTorch" in out, err
    assert OnnxClassifier(tmp_path / "single.onnx").crops == 1
    rc, out, err = cli("export", model, "--ten-crop", "--out", tmp_path / "ten.onnx")
    assert rc == 0 and OnnxClassifier(tmp_path / "ten.onnx").crops == 10
    rc, out, err = cli("export", model, "--format", "torchscript", "--ten-crop", "--out", tmp_path / "m.ts")
    assert rc == 0
    p = torch.jit.load(str(tmp_path / "m.ts"))(torch.rand(2, 1, 48, 48))
    assert p.shape == (2, 7) and torch.allclose(p.sum(1), torch.ones(2), atol=1e-4)
    before = (tmp_path / "ten.onnx").read_bytes()
    rc, out, err = cli("export", model, "--out", tmp_path / "ten.onnx")  # never replaced unasked
    assert rc == 2 and "--force" in err and (tmp_path / "ten.onnx").read_bytes() == before
    rc, out, err = cli("export", tmp_path / "missing.pt")
    assert rc == 2 and "missing.pt" in err and len(err.strip().splitlines()) == 1


def test_existing_run_directory_is_refused_and_left_untouched(run_dir, genome_file):
    before = {n: (run_dir / n).read_bytes() for n in RUN_FILES}
    rc, out, err = cli("decode", genome_file, "--train", "--epochs", 1, "--fine-tune-epochs", 0, "--out", run_dir, *FAST)
    assert rc == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert {n: (run_dir / n).read_bytes() for n in RUN_FILES} == before
    rc, _, err = cli("decode", genome_file, "--train", "--epochs", 2, "--fine-tune-epochs", 1, "--out", run_dir,
                     "--resume", *FAST)
    assert rc == 0 and "already complete" in err
    assert {n: (run_dir / n).read_bytes() for n in RUN_FILES} == before


def test_bad_resume_targets_and_devices_fail_with_one_line(genome_file, tmp_path):
    cases = [
        (["--resume"], "needs --out"),
        (["--resume", "--out", tmp_path / "empty"], "no run to resume"),
    ]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "genome.json").write_text(json.dumps(TINY))
    (broken / "checkpoint-train.pt").write_bytes(b"truncated")
    cases.append((["--resume", "--out", broken], "corrupt"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "genome.json").write_text(json.dumps(dict(TINY, name="other", head={"reduce": "avg", "fc": []})))
    cases.append((["--resume", "--out", other], "holds a run of genome 'other'"))
    cases.append((["--augment-warmup", "-1", "--out", tmp_path / "warm"], "--augment-warmup -1: must be >= 0"))
    cases.append((["--epochs", 0, "--out", tmp_path / "zero"], "--epochs 0 --fine-tune-epochs 0: nothing to train"))
    (tmp_path / "notes").mkdir()  # a folder of the user's (a dataset, notes) is not a run directory
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    cases.append((["--out", tmp_path / "notes"], "exists, is not empty and holds no fernas run"))
    cases.append((["--merge-val", "--out", tmp_path / "merge"], "--merge-val --fine-tune-epochs 0: --merge-val "
                                                                 "fine-tunes on train+val"))
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda", "--out", tmp_path / "gpu"],
                      "--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False); "
                      "use --device cpu or auto"))
    for extra, message in cases:
        argv = ["decode", genome_file, "--train", "--epochs", 1, "--fine-tune-epochs", 0, *FAST, *extra]
        rc, _, err = cli(*argv)
        assert rc == 2, (extra, err)
        assert message in err and len(err.strip().splitlines()) == 1, (extra, err)
    assert not any((tmp_path / d).exists() for d in ("gpu", "empty", "warm", "zero", "merge"))
    assert (broken / "checkpoint-train.pt").read_bytes() == b"truncated"
    assert [p.name for p in (tmp_path / "notes").iterdir() if p.name != ".lock"] == ["notes.txt"]


def test_the_header_names_the_augmentation_warm_up_where_one_applies():
    from fernas.fulltrain import ProtocolConfig, _warmup_text

    assert _warmup_text(ProtocolConfig(epochs=48)) == ", augmentation warm-up 8 epochs"
    assert _warmup_text(ProtocolConfig(epochs=9)) == ", augmentation warm-up 8 epochs"  # epoch 9: the preset
    assert _warmup_text(ProtocolConfig(epochs=8)).endswith("(the training ends inside it)")
    assert _warmup_text(ProtocolConfig(epochs=3)) == ", augmentation warm-up 8 epochs (the training ends inside it)"
    for quiet in (ProtocolConfig(augment="none"), ProtocolConfig(augment_warmup=0), ProtocolConfig(epochs=0)):
        assert _warmup_text(quiet) == ""
    with pytest.raises(ValueError, match="augment_warmup must be >= 0"):
        ProtocolConfig(augment_warmup=-2)


def test_several_genomes_end_with_a_comparison(genome_file, tmp_path):
    second = tmp_path / "tiny_avg.json"
    second.write_text(json.dumps(dict(TINY, name="tiny_avg", head={"reduce": "avg", "fc": []})))
    rc, out, err = cli("decode", genome_file, second, "--train", "--epochs", 1, "--fine-tune-epochs", 0,
                       "--out", tmp_path / "cmp", *FAST)
    assert rc == 0, err
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert {r["genome"] for r in rows} == {"tiny", "tiny_avg"}
    assert (tmp_path / "cmp" / "tiny" / "metrics.json").is_file()
    assert (tmp_path / "cmp" / "tiny_avg" / "metrics.json").is_file()
    assert "tiny_avg" in out and "ten-crop" in out
    # trained on the centre crop alone (FAST: --augment none, one crop): ordered by single crop
    assert [float(r["test_accuracy_single"]) for r in rows] == sorted(
        (float(r["test_accuracy_single"]) for r in rows), reverse=True)
    assert "comparison (best single-crop accuracy first)" in out


@pytest.mark.parametrize("by_single", [False, True])
def test_the_comparison_orders_by_the_accuracy_that_compares(tmp_path, by_single, capsys):
    from fernas.train_several import _compare

    # "a" is ahead with ten crops, "b" with one: the order follows the figure that compares
    results = [(tmp_path / g, {"genome": g, "test_accuracy_tencrop": ten, "test_accuracy_single": one,
                               "macro_f1": 0.5, "params": 1, "macs": 1}) for g, ten, one in
               [("a", 0.8, 0.6), ("b", 0.7, 0.9)]]
    _compare(tmp_path, results, 1.0, by_single)
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert [r["genome"] for r in rows] == (["b", "a"] if by_single else ["a", "b"])
    assert ("best single-crop accuracy first" if by_single else "best ten-crop accuracy first") in capsys.readouterr().out


def test_evaluate_writes_metrics_and_plots(run_dir, tmp_path):
    out = tmp_path / "eval"
    rc, stdout, err = cli("evaluate", run_dir / "model.pt", "--data", "demo:280", "--out", out, "--device", "cpu")
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text())
    want = json.loads((run_dir / "metrics.json").read_text())
    # same data, same model, the precision its run tested in: the run's figures exactly
    assert (m["test_accuracy_tencrop"], m["test_loss_tencrop"]) == (want["test_accuracy_tencrop"], want["test_loss_tencrop"])
    assert m["precision"] == want["precision"] in ("bf16", "fp32")
    assert (out / "confusion.png").is_file() and (out / "saliency.png").is_file()
    assert "ten-crop accuracy" in stdout
    rc, _, err = cli("evaluate", run_dir / "model.pt", "--data", "demo:280", "--out", out)
    assert rc == 2 and "already holds" in err
    rc, _, err = cli("evaluate", run_dir / "model.pt", "--data", "demo:280", "--split", "val",
                     "--out", tmp_path / "val", "--device", "cpu")
    m = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert rc == 0 and m["split"] == "val" and not any(k.startswith("test_") for k in m), m.keys()
    assert 0 <= m["val_accuracy_tencrop"] <= 1 and m["val_loss_tencrop"] > 0


def meta_of(run_dir):
    import torch

    return {k: v for k, v in torch.load(run_dir / "model.pt", weights_only=True).items() if k != "state_dict"}


def test_evaluate_and_predict_run_the_model_at_the_precision_its_run_tested_it_with(run_dir, tmp_path):
    """model.pt records the run's precision; evaluate and predict use it unless told otherwise, so
    `fernas evaluate` reproduces metrics.json (bf16 autocast where the CPU has it changes the third decimal)."""
    import argparse

    import torch

    from fernas.commands.common import inference_amp
    from fernas.device import default_amp

    meta = torch.load(run_dir / "model.pt", weights_only=True)
    assert meta["precision"] == json.loads((run_dir / "metrics.json").read_text())["precision"]
    cpu = torch.device("cpu")
    for asked, recorded, want in (("model", "fp32", False), ("model", "bf16", True), ("model", None, default_amp(cpu)),
                                  ("fp32", "bf16", False), ("bf16", "fp32", True), ("auto", "fp32", default_amp(cpu))):
        meta = {} if recorded is None else {"precision": recorded}
        assert inference_amp(argparse.Namespace(precision=asked), meta, cpu) is want, (asked, recorded)
    # through the commands: evaluate records what it ran in; predict in fp32 gives the fp32 ONNX program's
    other = "fp32" if meta_of(run_dir)["precision"] == "bf16" else "bf16"
    obj = torch.load(run_dir / "model.pt", weights_only=True)
    torch.save({**obj, "precision": other}, tmp_path / "other.pt")
    for model, flag, ran in ((tmp_path / "other.pt", "model", other), (run_dir / "model.pt", "fp32", "fp32")):
        rc, _, err = cli("evaluate", model, "--data", "demo:280", "--precision", flag, "--out", tmp_path / f"e-{flag}",
                         "--device", "cpu")
        assert rc == 0 and json.loads((tmp_path / f"e-{flag}" / "metrics.json").read_text())["precision"] == ran, err
    from PIL import Image

    from fernas.export import OnnxClassifier

    face = torch.randint(0, 256, (48, 48), dtype=torch.uint8)
    Image.fromarray(face.numpy(), mode="L").save(tmp_path / "face.png")
    rc, out, err = cli("predict", run_dir / "model.pt", tmp_path / "face.png", "--precision", "fp32", "--json",
                       "--device", "cpu")
    got = list(json.loads(out)["probabilities"].values())
    want = OnnxClassifier(run_dir / "model-tencrop.onnx").predict_proba(face[None])[0]
    assert rc == 0 and max(abs(a - float(b)) for a, b in zip(got, want)) < 1e-4, (got, want)


def test_evaluate_and_predict_refuse_files_that_are_not_fernas_models(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    img = tmp_path / "face.png"
    Image.new("L", (48, 48), 128).save(img)
    for argv in (["evaluate", foreign, "--out", tmp_path / "e1"], ["evaluate", corrupt, "--out", tmp_path / "e2"],
                 ["evaluate", tmp_path / "missing.pt"], ["predict", foreign, img], ["predict", corrupt, img],
                 ["predict", tmp_path / "missing.onnx", img]):
        rc, _, err = cli(*argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "e1").exists()


def test_predict_on_generated_images(run_dir, tmp_path):
    from fernas.demo_faces import make_demo

    demo = make_demo(0, 0, 7, seed=5)
    paths = []
    for i, (x, y) in enumerate(zip(demo.test.x, demo.test.y)):
        img = Image.fromarray(x.numpy())
        if i % 2:  # colour and larger: predict must cope with any size and mode
            img = img.convert("RGB").resize((120, 120))
            path = tmp_path / f"face{i}.jpg"
        else:
            path = tmp_path / f"face{i}.png"
        img.save(path)
        paths.append(path)
    rc, out, err = cli("predict", run_dir / "model.pt", *paths, "--json", "--device", "cpu")
    assert rc == 0, err
    lines = [json.loads(l) for l in out.strip().splitlines()]
    assert len(lines) == 7
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    for rec, path in zip(lines, paths):
        assert rec["file"] == str(path)
        assert list(rec["probabilities"]) == classes
        assert sum(rec["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert rec["emotion"] == max(rec["probabilities"], key=rec["probabilities"].get)
    rc, out, _ = cli("predict", run_dir / "model.pt", paths[0])
    assert rc == 0 and out.startswith(f"{paths[0]}: ") and len(out.strip().splitlines()) == 1
    # the run's ONNX file gives the same answers without the torch model (fp32 there; model.pt
    # runs with bf16 autocast on CPUs with native bf16, hence the tolerance)
    rc, out, err = cli("predict", run_dir / "model-tencrop.onnx", *paths, "--json")
    assert rc == 0, err
    onnx_lines = [json.loads(l) for l in out.strip().splitlines()]
    assert [r["file"] for r in onnx_lines] == [str(p) for p in paths]
    for rec, onnx_rec in zip(lines, onnx_lines):
        assert onnx_rec["probabilities"] == pytest.approx(rec["probabilities"], abs=1e-2)
    (tmp_path / "bad.png").write_text("not an image")
    rc, out, err = cli("predict", run_dir / "model.pt", paths[0], tmp_path / "bad.png")
    assert rc == 2 and "bad.png" in err and out == ""


def test_resume_takes_the_runs_own_settings(tmp_path, capsys):
    """A resumed run trains on its stored data and protocol, not on what the new command line says."""
    import argparse

    from fernas.commands.train import _restore_run_settings
    from fernas.fulltrain import RUN_VERSION
    from fernas.io import atomic_write_json

    run = tmp_path / "run"
    atomic_write_json(run / "config.json", {"fernas_train_run": RUN_VERSION,
                                            "args": {"data": "fer2013.csv", "epochs": 300, "train_crops": 10,
                                                     "seed": 7}})
    args = argparse.Namespace(data="demo", epochs=5, train_crops=1, seed=0, merge_val=False, fer_test="public")
    _restore_run_settings(args, [run])
    assert (args.data, args.epochs, args.train_crops, args.seed) == ("fer2013.csv", 300, 10, 7)
    assert args.fer_test == "private"  # stored before --fer-test existed: it tested on PrivateTest
    assert "--data" in capsys.readouterr().err


def test_resume_refuses_genomes_trained_with_other_settings(tmp_path):
    """A multi-genome resume whose runs were trained with other settings is refused (one line, which
    file, which flag): their comparison would put unlike trainings side by side."""
    import argparse

    from fernas.commands.train import _restore_run_settings
    from fernas.errors import UserError
    from fernas.fulltrain import RUN_VERSION
    from fernas.io import atomic_write_json

    def record(run, **settings):
        atomic_write_json(run / "config.json", {"fernas_train_run": RUN_VERSION, "args": settings})

    a, b = tmp_path / "a", tmp_path / "b"
    record(a, data="demo", epochs=48, seed=0)
    record(b, data="demo", epochs=8, seed=0, merge_val=True)
    args = argparse.Namespace(data="demo", epochs=300, seed=0, merge_val=False)  # the command line says 300
    with pytest.raises(UserError, match=r"b/config.json: trained with --epochs 8, not 48 as .*a/config.json "
                                        r"\(and 1 more\)"):
        _restore_run_settings(args, [a, b])
    record(b, data="demo", epochs=48, seed=0, merge_val=True)  # a did not record merge_val: the command line's
    with pytest.raises(UserError, match=r"--merge-val on, not off as this command line"):
        _restore_run_settings(args, [a, b])
    record(b, data="demo", epochs=48, seed=0)
    _restore_run_settings(args, [a, b, tmp_path / "c"])  # alike (c has no config.json): resumed with a's
    assert args.epochs == 48


def test_train_command_writes_what_decode_train_writes(run_dir, genome_file, tmp_path):
    """`fernas train` and `fernas decode --train` run the same code: same files, same numbers."""
    out = tmp_path / "via-train"
    rc, _, err = cli("train", genome_file, "--epochs", 2, "--fine-tune-epochs", 1, "--out", out, *FAST)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in run_dir.iterdir())
    drop = lambda rows, key: [{k: v for k, v in r.items() if k != key} for r in rows]
    read = lambda d: list(csv.DictReader((d / "history.csv").open()))
    assert drop(read(out), "seconds") == drop(read(run_dir), "seconds")
    m_train, m_decode = (json.loads((d / "metrics.json").read_text()) for d in (out, run_dir))
    m_train.pop("train_seconds"), m_decode.pop("train_seconds")
    assert m_train == m_decode
    w_train, w_decode = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (out, run_dir))
    assert all(torch.equal(w_train[k], w_decode[k]) for k in w_decode)
    c_train, c_decode = (json.loads((d / "config.json").read_text()) for d in (out, run_dir))
    assert c_train["fernas_train_run"] == c_decode["fernas_train_run"] == 3
    assert (c_train["command"], c_decode["command"]) == ("fernas train", "fernas decode --train")
    rc, _, err = cli("train", genome_file, "--epochs", 1, "--out", out, *FAST)
    assert rc == 2 and "holds another run; pass --resume to continue it, or choose another --out" in err


def test_resume_of_a_run_written_by_an_older_version_is_refused(genome_file, tmp_path):
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "genome.json").write_text(json.dumps(TINY))
    (old / "config.json").write_text(json.dumps({"command": "fernas decode --train", "args": {"epochs": 1}}))
    before = sorted(p.name for p in old.iterdir())
    for command in (["decode", genome_file, "--train"], ["train", genome_file]):
        rc, _, err = cli(*command, "--resume", "--out", old, *FAST)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{old / 'config.json'}: training run version 1, this fernas reads version 3" in err
    assert sorted(p.name for p in old.iterdir()) == before


def test_train_flags_without_train_are_refused_by_decode(genome_file):
    for flags in (["--epochs", 3], ["--data", "demo:70"], ["--merge-val"], ["--device", "cpu"]):
        rc, _, err = cli("decode", genome_file, *flags)
        assert rc == 2 and f"{flags[0]} only applies with --train" in err, (flags, err)
    rc, out, _ = cli("decode", genome_file, "--device", "auto")  # the default value is no request
    assert rc == 0 and "total parameters" in out


def test_a_training_resume_refuses_other_data(tmp_path):
    """Its epochs would continue on another dataset than they began on (a file edited, a folder
    now read another way): refused in one line before anything trains."""
    from fernas.data import load_dataset
    from fernas.errors import RunDirError
    from fernas.fulltrain import ProtocolConfig, run_protocol, train_start

    cfg = ProtocolConfig(epochs=2, fine_tune_epochs=0, train_crops=1, augment="none", device="cpu")
    run = tmp_path / "run"
    train_start(TINY, load_dataset("demo:70,35,35"), cfg, run, 1)
    history = (run / "history.csv").read_text()
    with pytest.raises(RunDirError, match=r"demo:84,35,35: not the data the run in .*run began with \(70/35/35 "
                                          r"train/val/test images then, 84/35/35 now: the data, or how this fernas reads it, changed\); a run keeps its data"):
        run_protocol(TINY, load_dataset("demo:84,35,35"), cfg, run, resume=True)
    assert (run / "history.csv").read_text() == history


def test_a_training_resume_names_only_the_typed_flags_it_does_not_use(tmp_path, capsys):
    """Not the flags left at their defaults (it named --data, --fine-tune-epochs, --train-crops
    on a bare `decode --train --resume`), nor one typed at the run's own value."""
    from fernas.cli import build_parser
    from fernas.commands.train import _restore_run_settings
    from fernas.fulltrain import RUN_VERSION
    from fernas.io import atomic_write_json

    run = tmp_path / "a"
    run.mkdir()
    atomic_write_json(run / "config.json", {"fernas_train_run": RUN_VERSION,
                                            "args": {"data": "demo:70", "epochs": 48, "train_crops": 1, "seed": 0}})
    for typed, named in (([], None), (["--epochs", "5", "--train-crops=1"], "--epochs")):
        argv = ["decode", "g.json", "--train", "--out", str(run), "--resume", *typed]
        args = build_parser().parse_args(argv)
        args.argv = argv
        _restore_run_settings(args, [run])
        err = capsys.readouterr().err
        assert (args.epochs, args.data) == (48, "demo:70")
        assert err == ("" if named is None else
                       f"resuming {run} with its stored settings ({named} from config.json, not from this command line)\n")


def test_a_second_comparison_into_the_same_out_is_refused(tmp_path):
    """Two multi-genome trainings into one --out: the second would replace the first's
    comparison.csv with its own genomes; it is refused before training (one line, exit 2), and
    training the four together with --resume compares them all."""
    files = []
    for name in ("ta", "tb", "tc"):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(dict(TINY, name=name)))
    out = tmp_path / "cmp"
    argv = ["train", "--epochs", 1, "--fine-tune-epochs", 0, *FAST, "--out", out]
    rc, _, err = cli(*argv[:1], files[0], files[1], *argv[1:])
    assert rc == 0, err
    before = (out / "comparison.csv").read_text()
    rc, _, err = cli(*argv[:1], files[2], files[1], *argv[1:])
    assert rc == 2 and "compares other genomes' runs (ta)" in err and len(err.strip().splitlines()) == 1, err
    assert (out / "comparison.csv").read_text() == before and not (out / "tc").exists()
    rc, _, err = cli(*argv[:1], *files, *argv[1:], "--resume")
    assert rc == 0, err
    assert [r.split(",")[0] for r in (out / "comparison.csv").read_text().splitlines()[1:]].count("ta") == 1
    assert len((out / "comparison.csv").read_text().splitlines()) == 4


def test_export_refuses_its_own_input_a_model_of_nan_and_names_a_ctrl_c(run_dir, tmp_path):
    import shutil

    import torch

    from fernas.commands.export import _interrupted

    model = tmp_path / "model.pt"
    shutil.copy(run_dir / "model.pt", model)
    before = model.read_bytes()
    rc, _, err = cli("export", model, "--out", model, "--force")
    assert rc == 2 and "is the input model" in err and model.read_bytes() == before
    obj = torch.load(model, weights_only=True)
    obj["state_dict"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    torch.save(obj, tmp_path / "nan.pt")
    rc, _, err = cli("export", tmp_path / "nan.pt", "--out", tmp_path / "nan.onnx")
    assert rc == 2 and "probabilities are not finite" in err and not (tmp_path / "nan.onnx").exists(), err
    try:  # torch.export wraps a Ctrl-C during its tracing in its own error
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("Failed to export the model with torch.export") from inner
    except RuntimeError as wrapped:
        assert _interrupted(wrapped)
    assert not _interrupted(RuntimeError("an unsupported operator"))

"""Ten-crop evaluation, metrics, the model file and its export, image loading, plots, on constructed cases."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from fernas.dataset import Split
from fernas.errors import UserError
from fernas.evaluate import crop_logits, evaluate_model, load_face_images, metrics, predict_proba
from fernas.export import OnnxClassifier, export_onnx, export_torchscript
from fernas.modelfile import load_model_file, save_model_file
from fernas.model import build_model

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
GENOME = {"fernas_genome": 1, "name": "eval-tiny",
          "stages": [{"block": "conv", "repeats": 1, "width": 16, "kernel": 3, "dropout": 0.0, "pool": "max"}],
          "head": {"reduce": "flatten", "fc": []},
          "train": {"optimizer": "adam", "lr": 0.001, "weight_decay": 0.0, "scheduler": "constant", "batch_size": 32}}


class Linear40(torch.nn.Module):
    """A position-sensitive model: logits are a fixed linear map of the 40x40 crop's pixels."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(1600, 7)

    def forward(self, x):
        return self.fc(x.reshape(x.shape[0], -1))


def test_ten_crop_averages_the_logits_of_torchvision_ten_crops():
    x = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    model = Linear40().eval()
    got = crop_logits(model, x, crops=10, batch_crops=20)  # 2 images per forward: batching is exercised
    xf = x.float().unsqueeze(1) / 255
    with torch.no_grad():
        want = torch.stack([model(torch.stack(TF.ten_crop(img, 40))).mean(0) for img in xf])
        centre = model(torch.stack([TF.center_crop(img, 40) for img in xf]))
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(crop_logits(model, x, crops=1), centre, atol=1e-5)


def test_ten_crop_evaluation_can_be_right_where_the_centre_crop_is_wrong():
    # The model answers "happy" for a bright top-left corner, else "angry"; the bright square
    # is in the corner only, so the centre crop misses it but the ten-crop vote sees it.
    class Corner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):  # (B, 1, 40, 40)
            corner = x[:, 0, :4, :4].mean((1, 2))
            logits = torch.zeros(x.shape[0], 7)
            logits[:, 3] = corner * 100
            logits[:, 0] = 1.0
            return logits + self.w

    x = torch.zeros(4, 48, 48, dtype=torch.uint8)
    x[:, :4, :4] = 255
    split = Split(x, torch.full((4,), 3))
    m = evaluate_model(Corner(), split, CLASSES)
    assert m["test_accuracy_tencrop"] == 1.0
    assert m["test_accuracy_single"] == 0.0


def test_metrics_on_a_constructed_case():
    m = metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows: true class
    pc = m["per_class"]
    assert pc["a"]["precision"] == pytest.approx(0.5) and pc["a"]["recall"] == pytest.approx(0.5)
    assert pc["b"]["precision"] == pytest.approx(2 / 3) and pc["b"]["recall"] == pytest.approx(1.0)
    assert pc["b"]["f1"] == pytest.approx(0.8)
    assert pc["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load is deprecated upstream
def test_model_file_round_trip_and_export(tmp_path):
    torch.manual_seed(1)
    net = build_model(GENOME).eval()
    path = tmp_path / "model.pt"
    save_model_file(path, GENOME, net.state_dict(), {"num_classes": 7, "classes": CLASSES})
    doc, loaded, meta = load_model_file(path)
    assert doc["name"] == "eval-tiny" and meta["classes"] == CLASSES
    x = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    p_orig = predict_proba(net, x)
    assert torch.allclose(predict_proba(loaded, x), p_orig, atol=1e-6)
    # the exported TorchScript program runs without fernas and includes ten-crop averaging
    export_torchscript(loaded, tmp_path / "inference.pt", ten_crop=True)
    scripted = torch.jit.load(str(tmp_path / "inference.pt"))
    p_ts = scripted(x.float().unsqueeze(1) / 255)
    assert p_ts.shape == (3, 7)
    assert torch.allclose(p_ts, p_orig, atol=1e-5)


@pytest.mark.parametrize("ten_crop", [True, False])
def test_onnx_export_matches_pytorch_with_onnxruntime(tmp_path, ten_crop):
    """The ONNX program, run by onnxruntime on the CPU, gives PyTorch's probabilities (fp32,
    tolerance 1e-4) for any batch size; the class order and crops come from its metadata."""
    torch.manual_seed(2)
    net = build_model(GENOME).eval()
    path = tmp_path / "m.onnx"
    diff = export_onnx(net, path, ten_crop=ten_crop, classes=CLASSES, meta={"genome": "eval-tiny"})
    assert diff < 1e-4
    clf = OnnxClassifier(path)
    assert clf.classes == CLASSES and clf.crops == (10 if ten_crop else 1) and clf.meta["genome"] == "eval-tiny"
    assert "/ 255" in clf.meta["preprocessing"]
    for n in (1, 7, 300):  # a dynamic batch, beyond the runtime's own batching
        x = torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8)
        want = predict_proba(net, x, crops=10 if ten_crop else 1)
        got = torch.from_numpy(clf.predict_proba(x))
        assert got.shape == (n, 7) and torch.allclose(got, want, atol=1e-4)


def test_onnx_files_without_fernas_metadata_or_unreadable_are_refused(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx at all")
    with pytest.raises(UserError, match="not a readable ONNX file"):
        OnnxClassifier(junk)
    with pytest.raises(UserError, match="no such ONNX file"):
        OnnxClassifier(tmp_path / "missing.onnx")


@pytest.mark.parametrize("field, value, message", [
    ("classes", "angry,disgust", "metadata 'classes': expected a JSON list of 7 class names"),
    ("classes", '{"a": 1}', "metadata 'classes'"), ("classes", '["a", "b"]', "metadata 'classes'"),
    ("classes", "5", "metadata 'classes'"), ("crops", "x", "metadata 'crops': expected 1 or 10"),
    ("input", "", "expected one input 'x' (N, 1, 48, 48) and one output")])
def test_onnx_files_with_malformed_fernas_metadata_are_refused(tmp_path, field, value, message):
    """Metadata another tool wrote (a comma-separated class list), or a graph of another input:
    one line naming the field, not a traceback at the first prediction."""
    import onnx

    path = tmp_path / "m.onnx"
    export_onnx(build_model(GENOME).eval(), path, ten_crop=False, classes=CLASSES)
    model = onnx.load(path)
    if field == "input":
        model.graph.input[0].name = "images"
        for node in model.graph.node:
            node.input[:] = ["images" if i == "x" else i for i in node.input]
    else:
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, field: value})
    onnx.save(model, path)
    with pytest.raises(UserError, match=re.escape(message)):
        OnnxClassifier(path)


def test_foreign_missing_or_corrupt_model_files_are_refused(tmp_path):
    with pytest.raises(UserError, match="no such model file"):
        load_model_file(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="a directory, not a model file"):
        load_model_file(tmp_path)
    with pytest.raises(UserError, match="/dev/null: not a regular file"):
        load_face_images(["/dev/null"])
    wider = {**GENOME, "stages": [{**GENOME["stages"][0], "width": 24}]}  # weights of another network
    save_model_file(tmp_path / "other.pt", wider, build_model(GENOME).state_dict())
    with pytest.raises(UserError, match=r"weights do not fit the genome's network \((Missing|Unexpected|size mismatch)"):
        load_model_file(tmp_path / "other.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="not a fernas model"):
        load_model_file(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(UserError, match=r"junk.pt: not a fernas model file \(not a file torch.save wrote\)$"):
        load_model_file(junk)


def test_face_images_of_any_size_and_mode_become_48x48_gray(tmp_path):
    Image.new("RGB", (100, 80), (200, 10, 10)).save(tmp_path / "colour.png")
    Image.new("L", (30, 30), 77).save(tmp_path / "small.jpg")
    x = load_face_images([tmp_path / "colour.png", tmp_path / "small.jpg"])
    assert x.shape == (2, 48, 48) and x.dtype == torch.uint8
    assert abs(int(x[1].float().mean()) - 77) <= 1
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(UserError, match="not.png"):
        load_face_images([tmp_path / "not.png"])


def test_figures_are_written_atomically_as_png(tmp_path):
    from fernas.report import new_figure, save_figure

    fig, ax = new_figure()
    ax.plot([1, 2, 3], [0.2, 0.4, 0.3])
    save_figure(fig, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no temporary file left


class _Code:
    """An object whose unpickling would run code: a model file must never load it."""

    def __reduce__(self):
        return (print, ("this ran",))


def test_a_model_file_carrying_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save({"fernas_model": 1, "genome": GENOME, "state_dict": {}, "payload": _Code()}, path)
    with pytest.raises(UserError, match="not a readable fernas model file"):
        load_model_file(path)
    assert "this ran" not in capsys.readouterr().out


def _model_file(path, **change) -> str:
    """A model.pt of the tiny genome, with fields replaced (a value None: the field removed)."""
    torch.manual_seed(3)
    save_model_file(path, GENOME, build_model(GENOME).state_dict(), {"num_classes": 7, "classes": CLASSES})
    obj = torch.load(path, weights_only=True)
    obj.update(change)
    torch.save({k: v for k, v in obj.items() if v is not None}, path)
    return str(path)


def _fails_in_one_line(capsys, argv) -> str:
    from fernas.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("change, message", [
    ({"genome": None}, "missing field 'genome' (the genome document)"),
    ({"state_dict": None}, "missing field 'state_dict' (the weights)"),
    ({"genome": 5}, "genome: expected an object (the genome document), found number"),
    ({"state_dict": [1]}, "state_dict: expected a mapping of parameter names to tensors"),
    ({"num_classes": "7"}, "num_classes: expected a positive integer, found '7'"),
    # fewer names than outputs: predict and export dropped the last class without a word
    ({"classes": CLASSES[:6]}, "classes: 6 names for a network of 7 outputs"),
    ({"classes": CLASSES + ["bored"]}, "classes: 8 names for a network of 7 outputs"),
])
def test_every_command_refuses_a_model_file_with_a_bad_field(tmp_path, capsys, change, message):
    model = _model_file(tmp_path / "model.pt", **change)
    Image.new("L", (48, 48), 100).save(tmp_path / "face.png")
    for argv in (["predict", model, str(tmp_path / "face.png")],
                 ["evaluate", model, "--data", "demo:14,7,7", "--out", str(tmp_path / "ev")],
                 ["export", model, "--out", str(tmp_path / "m.onnx")]):
        assert _fails_in_one_line(capsys, argv).startswith(f"fernas: error: {model}: {message}"), argv
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "ev").exists()


def test_files_that_are_no_model_file_say_what_they_are(tmp_path, capsys):
    (tmp_path / "config.pt").write_text(json.dumps({"kind": "train"}))  # a JSON file renamed .pt
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.pt").write_bytes(b"")
    whole = open(_model_file(tmp_path / "model.pt"), "rb").read()
    (tmp_path / "cut.pt").write_bytes(whole[:len(whole) // 2])  # a copy that stopped half way
    for name, what in (("config", "a JSON text file"), ("random", "not a file torch.save wrote"),
                       ("empty", "empty file"), ("cut", "a damaged or truncated PyTorch archive")):
        path = tmp_path / f"{name}.pt"
        err = _fails_in_one_line(capsys, ["evaluate", str(path), "--data", "demo:14,7,7"])
        assert err == f"fernas: error: {path}: not a fernas model file ({what})"


def test_an_exported_torchscript_program_is_named_as_such(tmp_path):
    """One line, without torch's warning about TorchScript archives before it."""
    model = _model_file(tmp_path / "model.pt")
    Image.new("L", (48, 48), 100).save(tmp_path / "face.png")
    script = tmp_path / "model.torchscript.pt"
    _, net, _ = load_model_file(model)
    export_torchscript(net, script, ten_crop=False)
    r = subprocess.run([sys.executable, "-m", "fernas", "predict", str(script), str(tmp_path / "face.png")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == (
        f"fernas: error: {script}: an exported TorchScript program (`fernas export --format torchscript`), not a "
        "fernas model file; give the model.pt it was exported from\n")


def test_export_and_evaluate_refuse_an_out_that_cannot_be_written_before_the_work(tmp_path, capsys):
    model = _model_file(tmp_path / "model.pt")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    adir, afile = tmp_path / "adir", tmp_path / "afile"
    err = _fails_in_one_line(capsys, ["export", model, "--out", str(adir), "--force"])
    assert err == f"fernas: error: {adir}: is a directory; give --out a file name"
    err = _fails_in_one_line(capsys, ["export", model, "--out", str(afile / "x.onnx")])
    assert err == f"fernas: error: {afile}: not a directory (in --out {afile / 'x.onnx'})"
    err = _fails_in_one_line(capsys, ["evaluate", model, "--data", "demo:14,7,7", "--out", str(afile)])
    assert err.startswith(f"fernas: error: {afile}: not a directory (--out names the directory")
    assert list(adir.iterdir()) == [] and afile.read_text() == ""
    run = tmp_path / "trained"  # a run directory: its metrics.json is its result in `fernas runs`
    run.mkdir()
    (run / "config.json").write_text('{"fernas_train_run": 3}')
    err = _fails_in_one_line(capsys, ["evaluate", model, "--data", "demo:14,7,7", "--out", str(run)])
    assert err == f"fernas: error: {run}: holds a fernas run (config.json); choose another --out for the evaluation"


def test_evaluate_names_the_usage_and_warns_of_the_split_a_model_chose_on(tmp_path, capsys):
    """A model tested on PublicTest (`--fer-test public`) chose its weights on PrivateTest: an
    evaluation of PrivateTest says so in one warning line; each line names the Usage."""
    from fernas.cli import main

    csv_path = tmp_path / "fer2013.csv"
    assert main(["data", "demo", "--out", str(csv_path), "--n-train", "14", "--n-val", "7", "--n-test", "14"]) == 0
    model = tmp_path / "model.pt"
    net = build_model(GENOME)
    save_model_file(model, GENOME, net.state_dict(), {"num_classes": 7, "classes": CLASSES, "test_usage": "PublicTest"})
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(csv_path), "--out", str(tmp_path / "e1")]) == 0
    out, err = capsys.readouterr()
    assert "test (PrivateTest, 14 images)" in out
    assert (f"warning: {model} was tested on PublicTest and chose its weights on PrivateTest, which this evaluates; "
            "--fer-test public evaluates the split it was tested on") in err
    assert json.loads((tmp_path / "e1" / "metrics.json").read_text())["usage"] == "PrivateTest"
    assert main(["evaluate", str(model), "--data", str(csv_path), "--fer-test", "public", "--out", str(tmp_path / "e2")]) == 0
    out, err = capsys.readouterr()
    assert "test (PublicTest, 7 images)" in out and "warning" not in err

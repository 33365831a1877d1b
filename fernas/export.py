"""Inference programs of a trained model, runnable without fernas: ONNX (the default) and TorchScript.

An exported program takes float32 images `(N, 1, 48, 48)` -- a grayscale face resized to
48x48, pixels divided by 255 -- and returns class probabilities `(N, C)` (the softmax of the
logits).  The single-crop variant classifies the centre 40x40 crop; the ten-crop variant
averages the logits of the VGG paper's ten crops (seeds 000/002, Khaireddin & Chen: four
corners, centre, and their mirrors), the protocol fernas reports test accuracy with.

ONNX goes through `torch.onnx.export(dynamo=True)` in fp32 with a dynamic batch; the class
order, the preprocessing and the variant are stored in the model's metadata
(`metadata_props`), and each export is checked against PyTorch with onnxruntime before the
file is put in place.  TorchScript (deprecated upstream in torch 2.x) stays as the
non-default format for LibTorch users.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fernas.dataset import CROP_SIZE, IMAGE_SIZE
from fernas.errors import UserError, first_line
from fernas.io import atomic_write_bytes

FORMATS = ("onnx", "torchscript")
ONNX_TOLERANCE = 1e-4  # max |probability difference| accepted between onnxruntime and PyTorch (fp32)
PREPROCESSING = ("input float32 (N, 1, 48, 48): a face crop in grayscale, centre-cropped to a square, resized "
                 "to 48x48 with antialiasing, pixel values / 255 (range [0, 1]); output: class probabilities "
                 "(N, C) in the order of 'classes'")
_CHECK_BATCH = 5  # an odd batch size, not the one traced with


class TenCropClassifier(nn.Module):
    """(N, 1, 48, 48) in [0, 1] -> (N, C) probabilities, ten-crop averaging of the logits inside
    (slicing only, so the exported graph needs nothing from fernas)."""

    def __init__(self, net: nn.Module, size: int = IMAGE_SIZE, crop: int = CROP_SIZE):
        super().__init__()
        self.net, self.size, self.crop = net, size, crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, o = self.crop, self.size - self.crop
        views = [x[:, :, :c, :c], x[:, :, :c, o:], x[:, :, o:, :c], x[:, :, o:, o:],
                 x[:, :, o // 2:o // 2 + c, o // 2:o // 2 + c]]
        crops = torch.stack(views + [v.flip(3) for v in views], 1)  # (N, 10, 1, c, c); mirrors last
        n = x.shape[0]
        logits = self.net(crops.reshape(n * 10, 1, c, c)).view(n, 10, -1).mean(1)
        return torch.softmax(logits, dim=1)


class CentreCropClassifier(nn.Module):
    """(N, 1, 48, 48) in [0, 1] -> (N, C) probabilities of the centre 40x40 crop."""

    def __init__(self, net: nn.Module, size: int = IMAGE_SIZE, crop: int = CROP_SIZE):
        super().__init__()
        self.net, self.size, self.crop = net, size, crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, t = self.crop, (self.size - self.crop) // 2
        return torch.softmax(self.net(x[:, :, t:t + c, t:t + c]), dim=1)


def inference_module(net: nn.Module, ten_crop: bool) -> nn.Module:
    """The program to export: `net` (any device) wrapped, on the CPU, in eval mode, fp32."""
    wrapper = TenCropClassifier(net) if ten_crop else CentreCropClassifier(net)
    return wrapper.cpu().float().eval()


def _example(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def export_onnx(net: nn.Module, path, *, ten_crop: bool, classes: list[str], meta: dict | None = None) -> float:
    """Write the ONNX program to `path` (atomically) after checking it against PyTorch with
    onnxruntime; returns the largest probability difference seen.  `meta`: extra metadata."""
    import onnx

    wrapper = inference_module(net, ten_crop)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation notes are noise here
        program = torch.onnx.export(wrapper, (_example(2),), dynamo=True, dynamic_shapes={"x": {0: batch}},
                                    input_names=["x"], output_names=["probabilities"], verbose=False)
    model = program.model_proto
    props = {"classes": json.dumps(list(classes)), "crops": "10" if ten_crop else "1",
             "preprocessing": PREPROCESSING, **{k: str(v) for k, v in (meta or {}).items()}}
    onnx.helper.set_model_props(model, props)
    data = model.SerializeToString()
    diff = _check_against_torch(data, wrapper)
    if diff > ONNX_TOLERANCE:
        raise RuntimeError(f"ONNX export of {path} differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE:g})")
    atomic_write_bytes(path, data)
    return diff


def _check_against_torch(data: bytes, wrapper: nn.Module) -> float:
    import onnxruntime as ort

    x = _example(_CHECK_BATCH, seed=1)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        want = wrapper(x).numpy()
    if not np.isfinite(want).all():  # a NaN would pass any tolerance: nothing to check against
        raise RuntimeError("the model's probabilities are not finite (weights holding NaN or inf)")
    return float(np.abs(got - want).max())


def export_torchscript(net: nn.Module, path, *, ten_crop: bool) -> None:
    """Write a traced TorchScript program (loadable with `torch.jit.load` or LibTorch)."""
    wrapper = inference_module(net, ten_crop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings
        traced = torch.jit.trace(wrapper, _example(2), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    atomic_write_bytes(path, buf.getvalue())


class OnnxClassifier:
    """An exported ONNX file run with onnxruntime on the CPU (no torch model needed)."""

    def __init__(self, path):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable files
            raise UserError(f"{path}: not a readable ONNX file ({first_line(exc, 160)})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if "classes" not in props or "crops" not in props:
            raise UserError(f"{path}: an ONNX file without fernas metadata (classes, crops); "
                            "expected one written by `fernas export` or `fernas decode --train`")
        self.path = path
        self.classes, self.crops = _checked_metadata(path, self.session, props)
        self.meta = dict(props)

    def predict_proba(self, x: torch.Tensor, batch: int = 256) -> np.ndarray:
        """Probabilities (N, C) of uint8 images x (N, 48, 48)."""
        xf = x.float().div(255.0).unsqueeze(1).numpy()  # (N, 1, 48, 48) in [0, 1]
        out = [self.session.run(None, {"x": xf[i:i + batch]})[0] for i in range(0, len(xf), batch)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)


def _checked_metadata(path: Path, session, props: dict) -> tuple[list[str], int]:
    """(classes, crops) of an ONNX file's fernas metadata, checked against its graph: one input
    `x` of (N, 1, 48, 48) images and one output of a probability per class."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != ["x"] or len(outputs) != 1:
        raise UserError(f"{path}: expected one input 'x' (N, 1, 48, 48) and one output, as `fernas export` writes; "
                        f"found inputs {[i.name for i in inputs]} and {len(outputs)} output(s)")
    n_out = outputs[0].shape[-1] if outputs[0].shape else None
    try:
        classes = json.loads(props["classes"])
    except ValueError:
        classes = None
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)
            and (not isinstance(n_out, int) or len(classes) == n_out)):
        raise UserError(f"{path}: metadata 'classes': expected a JSON list of {n_out or 'its'} class names, "
                        f"found {props['classes'][:80]!r}")
    if props["crops"] not in ("1", "10"):
        raise UserError(f"{path}: metadata 'crops': expected 1 or 10, found {props['crops'][:20]!r}")
    return classes, int(props["crops"])


def default_out(model_path, fmt: str, ten_crop: bool) -> Path:
    """MODEL.pt -> model.onnx / model-tencrop.onnx / model.torchscript.pt beside it."""
    p = Path(model_path)
    stem = p.stem + ("-tencrop" if ten_crop else "")
    return p.with_name(stem + (".onnx" if fmt == "onnx" else ".torchscript.pt"))


def is_onnx_file(path) -> bool:
    return os.fspath(path).lower().endswith(".onnx")

"""Evaluation: ten-crop and centre-crop testing, metrics, and face images from files.

Testing follows the VGG paper (seeds 000/002, Khaireddin & Chen): "standard ten-crop
averaging" -- the four 40x40 corners, the centre and their mirror images of each 48x48 face,
with the network's logits averaged over the ten crops.  All crops of a batch go through the
network in one forward pass under `inference_mode` + autocast.  The model file and the
exported program live in `fernas.modelfile`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fernas.dataset import CROP_SIZE, IMAGE_SIZE
from fernas.device import amp_context
from fernas.errors import UserError


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1]; float input is taken as already scaled."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@torch.inference_mode()
def crop_logits(model: nn.Module, x: torch.Tensor, *, crops: int = 10, device=None,
                amp: bool = False, batch_crops: int = 512) -> torch.Tensor:
    """Logits (N, C) of uint8 images x (N, 48, 48), averaged over `crops` (10 or 1 = centre).

    Images move to the device a batch at a time, so a CPU-resident test set works on GPU.
    """
    from fernas.augment import center_crop, ten_crop

    if crops not in (1, 10):
        raise ValueError(f"crops must be 1 or 10, got {crops}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    per = max(1, batch_crops // crops)  # images per forward pass
    out = []
    i = 0
    while i < x.shape[0]:
        xb = x[i:i + per].to(dev, non_blocking=True)  # (b, 48, 48) uint8
        b = xb.shape[0]
        if crops == 10:
            c = _as_float(ten_crop(xb)).reshape(b * 10, 1, CROP_SIZE, CROP_SIZE)  # (10b, 1, 40, 40)
        else:
            c = _as_float(center_crop(xb)).reshape(b, 1, CROP_SIZE, CROP_SIZE)  # (b, 1, 40, 40)
        c = c.contiguous(memory_format=torch.channels_last)
        try:
            with amp_context(dev, amp):
                logits = model(c).float()
        except torch.OutOfMemoryError:
            if per == 1:
                raise
            per = max(1, per // 2)  # halve and try the same images again
            del c, xb
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            continue
        out.append(logits.view(b, crops, -1).mean(1) if crops == 10 else logits)
        i += b
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


@torch.inference_mode()
def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, crops: int = 1,
                   device=None, amp: bool = False, batch_crops: int = 512) -> tuple[float, float]:
    """(loss, accuracy) of `model` on uint8 images `x` (N, 48, 48) with labels `y` (N,)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    dev = device if device is not None else next(model.parameters()).device
    logits = crop_logits(model, x, crops=crops, device=dev, amp=amp, batch_crops=batch_crops)  # (N, C)
    y = y.to(logits.device)
    loss = float(F.cross_entropy(logits, y))
    acc = float((logits.argmax(1) == y).float().mean())
    return loss, acc


def predict_proba(model: nn.Module, x: torch.Tensor, *, crops: int = 10, device=None,
                  amp: bool = False, batch_crops: int = 512) -> torch.Tensor:
    """Class probabilities (N, C) on CPU: softmax of the crop-averaged logits."""
    return torch.softmax(crop_logits(model, x, crops=crops, device=device, amp=amp,
                                     batch_crops=batch_crops), dim=1).cpu()


def metrics(y_true, y_pred, classes: list[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix.

    confusion[i][j] counts images of true class i predicted as j.  A class never predicted
    has precision 0 (and a class absent from y_true recall 0), as scikit-learn's
    zero_division=0; macro F1 averages over all classes.
    """
    y_true = torch.as_tensor(y_true).long().cpu()
    y_pred = torch.as_tensor(y_pred).long().cpu()
    k = len(classes)
    cm = torch.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)  # (true, pred)
    tp = cm.diag().double()
    pred_n = cm.sum(0).double()
    true_n = cm.sum(1).double()
    precision = torch.where(pred_n > 0, tp / pred_n.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(true_n > 0, tp / true_n.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    n = int(y_true.numel())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1.mean()),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]),
                          "f1": float(f1[i]), "support": int(true_n[i])} for i, c in enumerate(classes)},
        "confusion": cm.tolist(),
        "classes": list(classes),
    }


def evaluate_model(model: nn.Module, split, classes: list[str], *, device=None, amp: bool = False,
                   batch_crops: int = 512, return_probs: bool = False):
    """Ten-crop and centre-crop test of `model` on a Split: the metrics dict of metrics.json.

    With return_probs, also the ten-crop class probabilities (N, C) on CPU (for the plots),
    so the test set goes through the network once per crop mode only.
    """
    logits10 = crop_logits(model, split.x, crops=10, device=device, amp=amp, batch_crops=batch_crops)
    logits1 = crop_logits(model, split.x, crops=1, device=device, amp=amp, batch_crops=batch_crops)
    y = split.y.to(logits10.device)
    m = metrics(split.y, logits10.argmax(1).cpu(), classes)
    m["test_accuracy_tencrop"] = m["accuracy"]
    m["test_accuracy_single"] = float((logits1.argmax(1) == y).float().mean()) if len(y) else float("nan")
    m["test_loss_tencrop"] = float(F.cross_entropy(logits10, y)) if len(y) else float("nan")
    if return_probs:
        return m, torch.softmax(logits10, dim=1).cpu()
    return m


# --------------------------------------------------------------------------- image files


def load_face_images(paths) -> torch.Tensor:
    """Image files of any size, colour or grayscale, each taken as a face crop -> uint8 (N, 48, 48).

    Each image is converted to grayscale, centre-cropped to a square (a face crop is roughly
    square; squashing would distort the expression) and resized to 48x48 with antialiasing,
    as FER2013's faces were prepared; 16-bit images are scaled to 8 bits (`fernas.data.images`).
    An unreadable file (or one over Pillow's decompression-bomb limit) is a UserError naming it.
    """
    from fernas.data import BadImage, read_face

    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise UserError(f"{p}: " + ("a directory; give image files (a shell glob: DIR/*.png)" if p.is_dir()
                                        else "not a regular file (a device, a pipe)" if p.exists()
                                        else "no such image file"))
        try:
            face = read_face(p)  # (48, 48) uint8, as the folder loader reads it
        except BadImage as exc:
            raise UserError(f"{p}: not a readable image ({exc})") from None
        out.append(torch.from_numpy(face.copy()))
    return torch.stack(out) if out else torch.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)

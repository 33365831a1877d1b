"""The model file (`model.pt`): genome and weights.

The model file is a plain dict holding the genome document and the weights (nanoGPT's
habit), so the network is rebuilt from its genome before the weights load and the file loads
with `torch.load(weights_only=True)`: no pickled code runs when a model is opened.

The programs that run without fernas (ONNX, TorchScript) are written by `fernas.export`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fernas.dataset import CROP_SIZE
from fernas.errors import UserError
from fernas.io import atomic_torch_save

MODEL_FILE_VERSION = 1


def save_model_file(path, doc: dict, state: dict, extra: dict | None = None) -> None:
    """Write model.pt: {"fernas_model": 1, "genome": doc, "state_dict": weights, ...extra}.

    Only plain types and tensors go in, so `torch.load(weights_only=True)` reads it back.
    """
    obj = {"fernas_model": MODEL_FILE_VERSION, "genome": doc,
           "state_dict": {k: v.detach().cpu() for k, v in state.items()},
           "input_size": CROP_SIZE, "num_classes": int((extra or {}).get("num_classes", 7))}
    obj.update(extra or {})
    atomic_torch_save(obj, path)


def load_model_file(path, device="cpu") -> tuple[dict, nn.Module, dict]:
    """Read model.pt -> (genome doc, model in eval mode with its weights, meta).

    A missing, corrupt or foreign file is a UserError with one line naming the file.
    """
    from fernas.genome import validate
    from fernas.model import build_model

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable fernas model file ({first[:160]})") from None
    if not isinstance(obj, dict) or "fernas_model" not in obj:
        raise UserError(f"{path}: not a fernas model file (no 'fernas_model' key; "
                        "expected the model.pt that `fernas decode --train` writes)")
    if obj["fernas_model"] != MODEL_FILE_VERSION:
        raise UserError(f"{path}: fernas model file version {obj['fernas_model']!r}, "
                        f"this fernas reads version {MODEL_FILE_VERSION}")
    doc = validate(obj["genome"], where=f"{path}: genome")
    num_classes = int(obj.get("num_classes", 7))
    model = build_model(doc, input_size=int(obj.get("input_size", CROP_SIZE)), num_classes=num_classes)
    try:
        model.load_state_dict(obj["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise UserError(f"{path}: weights do not fit the genome's network "
                        f"({str(exc).splitlines()[0][:160]})") from None
    model.to(device).eval()
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "genome")}
    return doc, model, meta

"""The model file (`model.pt`): genome and weights.

The model file is a plain dict holding the genome document and the weights (nanoGPT's
habit), so the network is rebuilt from its genome before the weights load and the file loads
with `torch.load(weights_only=True)`: no pickled code runs when a model is opened.

`load_model_file` is the one reader every command goes through (predict, evaluate, export):
it checks the file's fields and their types once, so a damaged or foreign file is one line
naming the file and the field, never a KeyError in whichever command met it first.

The programs that run without fernas (ONNX, TorchScript) are written by `fernas.export`.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from fernas.dataset import CROP_SIZE
from fernas.errors import UserError
from fernas.io import atomic_torch_save

MODEL_FILE_VERSION = 1
WRITTEN_BY = "the model.pt that `fernas train` or `fernas decode --train` writes"


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

    A missing, corrupt or foreign file, or one whose fields are missing or of the wrong type,
    is a UserError with one line naming the file (and the field).
    """
    from fernas.genome import validate
    from fernas.model import build_model

    path = Path(path)
    obj = _read(path)
    _check_fields(path, obj)
    doc = validate(obj["genome"], where=f"{path}: genome")
    model = build_model(doc, input_size=obj.get("input_size", CROP_SIZE), num_classes=obj.get("num_classes", 7))
    try:
        model.load_state_dict(obj["state_dict"])
    except (RuntimeError, KeyError) as exc:
        # torch's first line only says "Error(s) in loading state_dict for FERNet:"; the next names the layer
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise UserError(f"{path}: weights do not fit the genome's network "
                        f"({(lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)[:200]})") from None
    model.to(device).eval()
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "genome")}
    return doc, model, meta


# ---- reading ---------------------------------------------------------------------------------
def _read(path: Path) -> dict:
    """The file's dict, read with weights_only=True; anything else is a UserError."""
    if not path.is_file():
        raise UserError(f"{path}: " + ("a directory, not a model file" if path.is_dir()
                                       else "not a regular file (a device, a pipe)" if path.exists()
                                       else "no such model file"))
    _refuse_torchscript(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on file formats: the error below says what matters
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises what its unpicklers raise: UnpicklingError, KeyError, EOFError...
        code = re.search(r"Unsupported global: (GLOBAL \S+)", str(exc))
        if code:  # a pickled object would run code to load: never loaded
            raise UserError(f"{path}: not a readable fernas model file (it holds a pickled Python object, "
                            f"{code.group(1)}, which fernas never loads: loading it could run code)") from None
        raise UserError(f"{path}: not a fernas model file ({_what_it_is(path)})") from None
    if not isinstance(obj, dict) or "fernas_model" not in obj:
        raise UserError(f"{path}: not a fernas model file (no 'fernas_model' key; expected {WRITTEN_BY})")
    return obj


def _refuse_torchscript(path: Path) -> None:
    """An exported TorchScript program (a zip with constants.pkl, as torch itself tells them
    apart) is named as such: torch's own refusal is a paragraph about weights_only."""
    try:
        with zipfile.ZipFile(path) as z:
            scripted = any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    if scripted:
        raise UserError(f"{path}: an exported TorchScript program (`fernas export --format torchscript`), "
                        "not a fernas model file; give the model.pt it was exported from")


def _what_it_is(path: Path) -> str:
    """A short reason a file torch cannot read is no model file, from its first bytes."""
    head = path.open("rb").read(512)
    if not head:
        return "empty file"
    if head.startswith(b"PK\x03\x04"):
        return "a damaged or truncated PyTorch archive"
    if _looks_like_text(head):
        return "a JSON text file" if head.lstrip()[:1] in (b"{", b"[") else "a text file"
    return "not a file torch.save wrote"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of the sample
            return False
        text = head[:exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in text)


# ---- the fields ------------------------------------------------------------------------------
def _check_fields(path: Path, obj: dict) -> None:
    """Each field the loader and the commands use: present where required, of its type."""
    from fernas.io import json_type

    version = obj["fernas_model"]
    if not _is_int(version) or version != MODEL_FILE_VERSION:
        raise UserError(f"{path}: fernas model file version {version!r}, "
                        f"this fernas reads version {MODEL_FILE_VERSION}")
    for key, what in (("genome", "the genome document"), ("state_dict", "the weights")):
        if key not in obj:
            raise UserError(f"{path}: missing field '{key}' ({what}); expected {WRITTEN_BY}")
    if not isinstance(obj["genome"], dict):
        raise UserError(f"{path}: genome: expected an object (the genome document), found {json_type(obj['genome'])}")
    weights = obj["state_dict"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items()):
        raise UserError(f"{path}: state_dict: expected a mapping of parameter names to tensors")
    _check_int(path, obj, "input_size", CROP_SIZE, lambda v: v == CROP_SIZE, f"{CROP_SIZE} (the crop size)")
    _check_int(path, obj, "num_classes", 7, lambda v: v >= 1, "a positive integer")
    _check_classes(path, obj)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(path: Path, obj: dict, key: str, default: int, ok, expected: str) -> None:
    value = obj.get(key, default)
    if not _is_int(value) or not ok(value):
        raise UserError(f"{path}: {key}: expected {expected}, found {value!r}")


def _check_classes(path: Path, obj: dict) -> None:
    """The class names must match the network's outputs one to one: with fewer, predict and
    export would silently drop the last outputs; with more, name a class no output has."""
    from fernas.dataset import FER_CLASSES

    n = obj.get("num_classes", 7)
    if "classes" not in obj:  # the commands then name the outputs by FER2013's seven classes
        if n != len(FER_CLASSES):
            raise UserError(f"{path}: missing field 'classes' (the class names), needed for a network of "
                            f"{n} outputs (without it fernas assumes FER2013's {len(FER_CLASSES)})")
        return
    classes = obj["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{path}: classes: expected a list of class names")
    if len(classes) != n:
        raise UserError(f"{path}: classes: {len(classes)} names for a network of {n} outputs (num_classes); "
                        "expected one name per output")

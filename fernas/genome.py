"""The architecture genome: a fixed-length integer vector for DEAP and a readable JSON document.

The vector has per-gene inclusive bounds (`GENE_BOUNDS`), so DEAP's two-point crossover and
uniform-integer mutation always produce valid genomes.  Genes of inactive stages and fully
connected layers are kept (so crossover can revive them); the JSON document keeps
them too, under `"dormant"`, so vector -> JSON -> vector round-trips exactly.  The genome id
hashes only the *active* content, so two genomes that build the same network and recipe
share one id and one fitness-cache entry.

The space contains the published designs of the seeds: the VGG of Khaireddin & Chen
(seeds 000/002), the random-search bests of Sarmah et al. (001) and Vulpe-Grigorasi &
Grigore (004), and the MobileNetV2-style model of Dao Cong & Le Trung (003).

Document (version 1)::

    {"fernas_genome": 1, "name": "...", "source": {...free-form provenance...},
     "stages": [{"block": "conv", "repeats": 2, "width": 64, "kernel": 3,
                 "dropout": 0.0, "pool": "max"},
                {"block": "inverted_residual", "expansion": 6, ...}],
     "head": {"reduce": "flatten", "fc": [{"width": 4096, "dropout": 0.2}]},
     "train": {"optimizer": "nesterov", "lr": 0.01, "weight_decay": 0.0001,
               "scheduler": "plateau", "batch_size": 64}}
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
from pathlib import Path
from typing import Any

from fernas.errors import GenomeError
from fernas.io import atomic_write_text, json_type

GENOME_VERSION = 1
MAX_STAGES = 5
MAX_FC = 3

# ---- allowed values of each gene (the vector stores an index into these) -------------
BLOCKS = ("conv", "inverted_residual")
EXPANSIONS = (1, 2, 4, 6)  # MobileNetV2 expansion factors t
# Block gene: 0 = plain conv-BN-ReLU, 1..4 = inverted residual with expansion 1, 2, 4, 6.
BLOCK_CHOICES = (("conv", None),) + tuple(("inverted_residual", t) for t in EXPANSIONS)
REPEATS = (1, 2, 3)
# Holds 64/128/256/512 (VGG), 32..256 step 32 and 64..512 step 64 (Keras Tuner spaces of 001/004).
WIDTHS = (16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
KERNELS = (3, 5, 7)
DROPOUTS = tuple(round(0.05 * i, 2) for i in range(11))  # 0.0 .. 0.5 step 0.05
POOLS = ("none", "max", "avg")
REDUCES = ("flatten", "avg")  # flatten the 40x40-resolution map (VGG) or global average pool
FC_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096)
OPTIMIZERS = ("sgd", "nesterov", "asgd", "adam", "amsgrad", "adadelta", "adagrad", "adamw")
LRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 5e-1, 1.0)  # 1-2-5 log grid
# The learning rates at which each optimizer trains at all: about a decade around the rates it
# is usually run at (SGD family 0.01-0.1 as the VGG seed; torch's defaults: Adam family 1e-3,
# Adagrad 0.01, Adadelta 1.0).  Fresh genomes draw their lr inside their optimizer's range and
# a GA child outside it redraws it inside (fernas.space.Space.fit_lr): outside it a short
# trial learns nothing (Adadelta at 2e-4 or 0.1, Adagrad at 1e-4 stayed at chance for 16
# epochs) and spends its compute at chance.
LR_RANGES = {"sgd": (5e-3, 1e-1), "nesterov": (5e-3, 1e-1), "asgd": (5e-3, 1e-1),
             "adam": (1e-4, 5e-3), "amsgrad": (1e-4, 5e-3), "adamw": (1e-4, 5e-3),
             "adagrad": (5e-3, 1e-1), "adadelta": (2e-1, 1.0)}
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 5e-4, 1e-3)
SCHEDULERS = ("constant", "plateau", "cosine", "cosine_wr", "onecycle", "step")
BATCH_SIZES = (32, 64, 96, 128, 192, 256)

STAGE_GENES = ("block", "repeats", "width", "kernel", "dropout", "pool")
_STAGE_CHOICES = {
    "block": BLOCK_CHOICES, "repeats": REPEATS, "width": WIDTHS,
    "kernel": KERNELS, "dropout": DROPOUTS, "pool": POOLS,
}
FC_GENES = ("width", "dropout")
_FC_CHOICES = {"width": FC_WIDTHS, "dropout": DROPOUTS}
TRAIN_GENES = ("optimizer", "lr", "weight_decay", "scheduler", "batch_size")
_TRAIN_CHOICES = {
    "optimizer": OPTIMIZERS, "lr": LRS, "weight_decay": WEIGHT_DECAYS,
    "scheduler": SCHEDULERS, "batch_size": BATCH_SIZES,
}


def _gene_names() -> list[str]:
    names = ["n_stages"]
    for s in range(MAX_STAGES):
        names += [f"stage{s}.{g}" for g in STAGE_GENES]
    names += ["head.reduce", "head.n_fc"]
    for f in range(MAX_FC):
        names += [f"fc{f}.{g}" for g in FC_GENES]
    names += [f"train.{g}" for g in TRAIN_GENES]
    return names


def _gene_bounds() -> list[tuple[int, int]]:
    bounds = [(1, MAX_STAGES)]
    for _ in range(MAX_STAGES):
        bounds += [(0, len(_STAGE_CHOICES[g]) - 1) for g in STAGE_GENES]
    bounds += [(0, len(REDUCES) - 1), (0, MAX_FC)]
    for _ in range(MAX_FC):
        bounds += [(0, len(_FC_CHOICES[g]) - 1) for g in FC_GENES]
    bounds += [(0, len(_TRAIN_CHOICES[g]) - 1) for g in TRAIN_GENES]
    return bounds


GENE_NAMES: list[str] = _gene_names()
GENE_BOUNDS: list[tuple[int, int]] = _gene_bounds()  # inclusive (low, high) per gene
N_GENES = len(GENE_BOUNDS)

# Dormant genes default to these when a hand-written document leaves them out.
DEFAULT_STAGE = {"block": "conv", "repeats": 1, "width": 64, "kernel": 3, "dropout": 0.0, "pool": "max"}
DEFAULT_FC = {"width": 256, "dropout": 0.0}


# ---- vector <-> document --------------------------------------------------------------
def _stage_from_genes(g: list[int]) -> dict:
    block, expansion = BLOCK_CHOICES[g[0]]
    stage: dict[str, Any] = {"block": block}
    if expansion is not None:
        stage["expansion"] = expansion
    stage.update(repeats=REPEATS[g[1]], width=WIDTHS[g[2]], kernel=KERNELS[g[3]],
                 dropout=DROPOUTS[g[4]], pool=POOLS[g[5]])
    return stage


def _stage_to_genes(stage: dict) -> list[int]:
    block_key = (stage["block"], stage.get("expansion") if stage["block"] == "inverted_residual" else None)
    return [BLOCK_CHOICES.index(block_key), REPEATS.index(stage["repeats"]), WIDTHS.index(stage["width"]),
            KERNELS.index(stage["kernel"]), DROPOUTS.index(stage["dropout"]), POOLS.index(stage["pool"])]


def from_vector(vec: list[int] | tuple[int, ...], name: str | None = None) -> dict:
    """Decode an integer vector into a genome document (raises GenomeError if out of bounds)."""
    vec = [int(v) for v in vec]
    if len(vec) != N_GENES:
        raise GenomeError(f"genome vector: expected {N_GENES} genes, found {len(vec)}")
    for i, (v, (lo, hi)) in enumerate(zip(vec, GENE_BOUNDS)):
        if not lo <= v <= hi:
            raise GenomeError(f"genome vector: gene {i} ({GENE_NAMES[i]}) = {v}, expected {lo}..{hi}")
    it = iter(vec)
    n_stages = next(it)
    stages = [_stage_from_genes([next(it) for _ in STAGE_GENES]) for _ in range(MAX_STAGES)]
    reduce = REDUCES[next(it)]
    n_fc = next(it)
    fcs = [{g: _FC_CHOICES[g][next(it)] for g in FC_GENES} for _ in range(MAX_FC)]
    train = {g: _TRAIN_CHOICES[g][next(it)] for g in TRAIN_GENES}
    doc = {
        "fernas_genome": GENOME_VERSION,
        "name": name or "",
        "stages": stages[:n_stages],
        "head": {"reduce": reduce, "fc": fcs[:n_fc]},
        "train": train,
        "dormant": {"stages": stages[n_stages:], "fc": fcs[n_fc:]},
    }
    if not doc["name"]:
        doc["name"] = f"g-{genome_id(doc)}"
    return doc


def to_vector(doc: dict) -> list[int]:
    """Encode a (validated) genome document as the fixed-length integer vector."""
    doc = validate(doc)
    dormant = doc.get("dormant", {})
    stages = doc["stages"] + list(dormant.get("stages", []))
    stages += [DEFAULT_STAGE] * (MAX_STAGES - len(stages))
    fcs = doc["head"]["fc"] + list(dormant.get("fc", []))
    fcs += [DEFAULT_FC] * (MAX_FC - len(fcs))
    vec = [len(doc["stages"])]
    for st in stages[:MAX_STAGES]:
        vec += _stage_to_genes(st)
    vec += [REDUCES.index(doc["head"]["reduce"]), len(doc["head"]["fc"])]
    for fc in fcs[:MAX_FC]:
        vec += [FC_WIDTHS.index(fc["width"]), DROPOUTS.index(fc["dropout"])]
    vec += [_TRAIN_CHOICES[g].index(doc["train"][g]) for g in TRAIN_GENES]
    return vec


# ---- validation -----------------------------------------------------------------------
_TOP_KEYS_REQUIRED = ("fernas_genome", "stages", "head", "train")
# "source": provenance of a seed design; "evolve": metrics a search attached; "dormant": inactive genes.
_TOP_KEYS_OPTIONAL = ("name", "source", "dormant", "evolve", "notes")


def _fmt_choices(choices) -> str:
    return ", ".join(json.dumps(c) for c in choices)


def _show(value: Any) -> str:
    """A value as JSON writes it; one JSON cannot hold (a tensor in a model file's genome) as Python shows it."""
    return json.dumps(value, default=repr)


def _check_keys(obj: Any, where: str, required: tuple, optional: tuple = ()) -> None:
    if not isinstance(obj, dict):
        raise GenomeError(f"{where}: expected an object, found {json_type(obj)}")
    for key in obj:
        if key not in required and key not in optional:
            allowed = ", ".join(required + optional)
            raise GenomeError(f"{where}: unknown key {key!r} (allowed: {allowed})")
    for key in required:
        if key not in obj:
            raise GenomeError(f"{where}: missing key {key!r}")


def _check_choice(value: Any, choices: tuple, where: str) -> Any:
    """Accept a value in `choices`; numbers compare with a tolerance (JSON 1e-4 vs 0.0001)."""
    if isinstance(value, bool):
        raise GenomeError(f"{where}: expected one of {_fmt_choices(choices)}, found {_show(value)}")
    for c in choices:
        if isinstance(c, str):
            if isinstance(value, str) and value.lower() == c:
                return c
        elif isinstance(value, (int, float)) and math.isclose(float(value), float(c), rel_tol=1e-6, abs_tol=1e-12):
            return c
    kind = "a string" if isinstance(choices[0], str) else "a number"
    if (isinstance(choices[0], str)) != isinstance(value, str):
        raise GenomeError(f"{where}: expected {kind} (one of {_fmt_choices(choices)}), found {_show(value)}")
    raise GenomeError(f"{where}: {_show(value)} is not allowed; expected one of {_fmt_choices(choices)}")


def _validate_stage(stage: Any, where: str) -> dict:
    _check_keys(stage, where, ("block", "repeats", "width", "kernel", "dropout", "pool"), ("expansion",))
    block = _check_choice(stage["block"], BLOCKS, f"{where}.block")
    out: dict[str, Any] = {"block": block}
    if block == "inverted_residual":
        if "expansion" not in stage:
            raise GenomeError(f"{where}: missing key 'expansion' (required for inverted_residual: one of 1, 2, 4, 6)")
        out["expansion"] = _check_choice(stage["expansion"], EXPANSIONS, f"{where}.expansion")
    elif "expansion" in stage:
        raise GenomeError(f"{where}.expansion: only allowed with block \"inverted_residual\"")
    for g in ("repeats", "width", "kernel", "dropout", "pool"):
        out[g] = _check_choice(stage[g], _STAGE_CHOICES[g], f"{where}.{g}")
    return out


def _validate_fc(fc: Any, where: str) -> dict:
    _check_keys(fc, where, FC_GENES)
    return {g: _check_choice(fc[g], _FC_CHOICES[g], f"{where}.{g}") for g in FC_GENES}


def _check_list(value: Any, where: str, lo: int, hi: int) -> list:
    if not isinstance(value, list):
        raise GenomeError(f"{where}: expected a list, found {json_type(value)}")
    if not lo <= len(value) <= hi:
        raise GenomeError(f"{where}: expected {lo} to {hi} entries, found {len(value)}")
    return value


def _check_version(version: Any, where: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool):  # "1", 1.0, true: not a version number
        raise GenomeError(f"{where}: fernas_genome: expected the integer {GENOME_VERSION}, found "
                          f"{_show(version)} ({json_type(version)})")
    if version != GENOME_VERSION:
        raise GenomeError(f"{where}: fernas_genome: unsupported version {version} "
                          f"(this fernas reads version {GENOME_VERSION})")


def _check_object(doc: dict, key: str, where: str) -> None:
    """`source` and `evolve` hold key-value records (the report and `fernas runs` read fields
    of `evolve`), so anything but an object there is refused here, not met later as a crash."""
    if key in doc and not isinstance(doc[key], dict):
        raise GenomeError(f"{where}: {key}: expected an object, found {json_type(doc[key])}")


def validate(doc: Any, where: str = "genome") -> dict:
    """Check a genome document and return it normalised (canonical values, no extra keys).

    Every error names `where` (usually the file), the field and what was expected.
    """
    _check_keys(doc, where, _TOP_KEYS_REQUIRED, _TOP_KEYS_OPTIONAL)
    _check_version(doc["fernas_genome"], where)
    stages = _check_list(doc["stages"], f"{where}: stages", 1, MAX_STAGES)
    out: dict[str, Any] = {"fernas_genome": GENOME_VERSION}
    name = doc.get("name", "")
    if not isinstance(name, str):
        raise GenomeError(f"{where}: name: expected a string, found {_show(name)}")
    out["name"] = name
    for key in ("source", "evolve"):
        _check_object(doc, key, where)
    if "source" in doc:
        out["source"] = copy.deepcopy(doc["source"])
    out["stages"] = [_validate_stage(s, f"{where}: stages[{i}]") for i, s in enumerate(stages)]
    head = doc["head"]
    _check_keys(head, f"{where}: head", ("reduce", "fc"))
    fcs = _check_list(head["fc"], f"{where}: head.fc", 0, MAX_FC)
    out["head"] = {"reduce": _check_choice(head["reduce"], REDUCES, f"{where}: head.reduce"),
                   "fc": [_validate_fc(f, f"{where}: head.fc[{i}]") for i, f in enumerate(fcs)]}
    train = doc["train"]
    _check_keys(train, f"{where}: train", TRAIN_GENES)
    out["train"] = {g: _check_choice(train[g], _TRAIN_CHOICES[g], f"{where}: train.{g}") for g in TRAIN_GENES}
    if "dormant" in doc:
        dormant = doc["dormant"]
        _check_keys(dormant, f"{where}: dormant", (), ("stages", "fc"))
        d_st = _check_list(dormant.get("stages", []), f"{where}: dormant.stages", 0, MAX_STAGES - len(stages))
        d_fc = _check_list(dormant.get("fc", []), f"{where}: dormant.fc", 0, MAX_FC - len(fcs))
        out["dormant"] = {"stages": [_validate_stage(s, f"{where}: dormant.stages[{i}]") for i, s in enumerate(d_st)],
                          "fc": [_validate_fc(f, f"{where}: dormant.fc[{i}]") for i, f in enumerate(d_fc)]}
    for key in ("evolve", "notes"):
        if key in doc:
            out[key] = copy.deepcopy(doc[key])
    if not out["name"]:
        out["name"] = f"g-{genome_id(out)}"
    return out


# ---- identity, files, sampling -------------------------------------------------------
def active_content(doc: dict) -> dict:
    """What builds the network and the recipe: no name, provenance or dormant genes."""
    return {"stages": doc["stages"], "head": doc["head"], "train": doc["train"]}


def genome_id(doc: dict) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of the active content."""
    canon = json.dumps(active_content(doc), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def dumps(doc: dict) -> str:
    """Readable JSON: one line per stage and per fully connected layer, like a settings table."""
    def row(obj: Any) -> str:
        return json.dumps(obj, separators=(", ", ": "))

    def rows(items: list, indent: str) -> str:
        if not items:
            return "[]"
        return "[\n" + ",\n".join(indent + "  " + row(i) for i in items) + "\n" + indent + "]"

    parts = []
    for key, value in doc.items():
        if key == "stages":
            text = rows(value, "  ")
        elif key == "head":
            text = "{" + f'"reduce": {json.dumps(value["reduce"])}, "fc": {rows(value["fc"], "  ")}' + "}"
        elif key == "dormant":
            text = ("{\n" + f'    "stages": {rows(value.get("stages", []), "    ")},\n'
                    + f'    "fc": {rows(value.get("fc", []), "    ")}\n' + "  }")
        elif key == "train":
            text = row(value)
        else:
            text = json.dumps(value, indent=2).replace("\n", "\n  ")
        parts.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def load_genome(path: str | os.PathLike) -> dict:
    """Read and validate a genome file; errors name the file and the field."""
    p = Path(path)
    if not p.exists():
        raise GenomeError(f"{p}: no such file")
    if p.is_dir():
        raise GenomeError(f"{p}: is a directory, expected a genome JSON file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GenomeError(f"{p}: cannot read: {exc}") from None
    if not text.strip():
        raise GenomeError(f"{p}: empty file, expected a genome JSON document")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenomeError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, arrays nested thousands deep
        raise GenomeError(f"{p}: invalid JSON: {_parse_failure(exc)}") from None
    if isinstance(doc, dict) and not doc.get("name"):
        doc = dict(doc, name=p.stem)  # an unnamed genome is called after its file
    return validate(doc, where=str(p))


def _parse_failure(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to read (expected a genome document)"
    return str(exc).split(";")[0][:160] or type(exc).__name__  # Python's own advice after ';' is no help here


def save_genome(doc: dict, path: str | os.PathLike) -> None:
    atomic_write_text(path, dumps(validate(doc)))


def random_vector(rng: random.Random) -> list[int]:
    """A uniform random vector within GENE_BOUNDS (every such vector is a valid genome)."""
    return [rng.randint(lo, hi) for lo, hi in GENE_BOUNDS]


def random_genome(rng: random.Random) -> dict:
    return from_vector(random_vector(rng))

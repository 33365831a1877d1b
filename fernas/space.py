"""The search space: which values each gene may take (`fernas space show`, `evolve --space`).

A space narrows the genome's fixed-length vector gene by gene: every gene keeps the sorted
raw vector values it may take.  Because the constraint is per gene, DEAP's two-point
crossover of two members is a member, mutation redraws (uniform) or steps (creep) among the
allowed values, fresh genomes are drawn gene by gene inside it, and the random-search-space
samples of seeds 001/004 are projected into it.  Only the *active* genes of a genome (its
stages and FC layers, not the dormant ones) decide whether a seed design belongs to it.

File (YAML, or JSON with a .json name); a gene left out keeps every value::

    fernas_space: 1
    stages:
      count: {min: 1, max: 3}
      all: {block: {fixed: conv}, width: {min: 32, max: 128}}   # every stage
      0: {kernel: {choices: [3, 5]}}                             # the first stage only
    head:
      fc_count: {max: 1}
      fc: {all: {width: {choices: [128, 256]}}}
    train: {optimizer: {fixed: nesterov}, lr: {fixed: 0.01}}

Per gene one of `fixed: V`, `choices: [V, ...]` or `min:`/`max:` (ordered genes); a bare
value means `fixed`, a bare list `choices`.  Errors name the file, the field and what was
expected (`SpaceError`, exit 2).

One prior sits on top of the per-gene values: a learning rate belongs to its optimizer's
range (`genome.LR_RANGES`).  Fresh draws take it from there and a GA child whose rate is
outside redraws it inside (`fit_lr`); seed designs and samples of 001/004 keep their
published rates.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fernas import genome as G
from fernas.errors import UserError

SPACE_VERSION = 1
BLOCK_NAMES = tuple("conv" if b == "conv" else f"inverted_residual_t{t}" for b, t in G.BLOCK_CHOICES)


class SpaceError(UserError):
    """A space file that cannot be used (the message names the file and the field)."""


@dataclass(frozen=True)
class Gene:
    index: int  # position in the vector
    field: str  # where the space file names it: stages.2.width, train.lr ...
    values: tuple  # what the raw vector values lo..hi mean, in order
    ordered: bool  # min/max make sense (widths, rates, counts), not for blocks or optimizers
    low: int  # the raw vector value of values[0]


def _genes() -> list[Gene]:
    st = {"block": (BLOCK_NAMES, False), "repeats": (G.REPEATS, True), "width": (G.WIDTHS, True),
          "kernel": (G.KERNELS, True), "dropout": (G.DROPOUTS, True), "pool": (G.POOLS, False)}
    fc = {"width": (G.FC_WIDTHS, True), "dropout": (G.DROPOUTS, True)}
    train = {"optimizer": (G.OPTIMIZERS, False), "lr": (G.LRS, True), "weight_decay": (G.WEIGHT_DECAYS, True),
             "scheduler": (G.SCHEDULERS, False), "batch_size": (G.BATCH_SIZES, True)}
    spec = [("stages.count", tuple(range(1, G.MAX_STAGES + 1)), True, 1)]
    spec += [(f"stages.{s}.{g}", *st[g], 0) for s in range(G.MAX_STAGES) for g in G.STAGE_GENES]
    spec += [("head.reduce", G.REDUCES, False, 0), ("head.fc_count", tuple(range(G.MAX_FC + 1)), True, 0)]
    spec += [(f"head.fc.{f}.{g}", *fc[g], 0) for f in range(G.MAX_FC) for g in G.FC_GENES]
    spec += [(f"train.{g}", *train[g], 0) for g in G.TRAIN_GENES]
    genes = [Gene(i, f, v, o, low) for i, (f, v, o, low) in enumerate(spec)]
    assert [(g.low, g.low + len(g.values) - 1) for g in genes] == list(map(tuple, G.GENE_BOUNDS))
    return genes


GENES = _genes()
BY_FIELD = {g.field: g for g in GENES}
OPTIMIZER, LR = BY_FIELD["train.optimizer"].index, BY_FIELD["train.lr"].index
# random_vector draws the optimizer before the rate; every optimizer needs a range.
assert OPTIMIZER < LR and set(G.LR_RANGES) == set(G.OPTIMIZERS)


@dataclass(frozen=True)
class Space:
    """Per gene, the raw vector values it may take (sorted)."""
    allowed: tuple[tuple[int, ...], ...]

    @classmethod
    def full(cls) -> "Space":
        return cls(tuple(tuple(range(lo, hi + 1)) for lo, hi in G.GENE_BOUNDS))

    @classmethod
    def from_config(cls, narrowed: dict | None) -> "Space":
        """From `GAConfig.space`: {field: [raw values]} of the narrowed genes (None: the full space)."""
        allowed = list(cls.full().allowed)
        for field, raw in (narrowed or {}).items():
            allowed[BY_FIELD[field].index] = tuple(sorted(int(v) for v in raw))
        return cls(tuple(allowed))

    def to_config(self) -> dict | None:
        full = Space.full().allowed
        narrowed = {g.field: list(a) for g, a, f in zip(GENES, self.allowed, full) if a != f}
        return narrowed or None

    def active_genes(self, vec: list[int]) -> list[int]:
        """Indices of the genes that shape the network (dormant stages and FC layers left out)."""
        n_stages, n_fc = vec[0], vec[BY_FIELD["head.fc_count"].index]
        out = []
        for g in GENES:
            parts = g.field.split(".")
            if parts[0] == "stages" and parts[1] != "count" and int(parts[1]) >= n_stages:
                continue
            if parts[:2] == ["head", "fc"] and int(parts[2]) >= n_fc:
                continue
            out.append(g.index)
        return out

    def admits(self, vec: list[int]) -> bool:
        """Whether the genome's active genes are all inside the space."""
        return all(vec[i] in self.allowed[i] for i in self.active_genes(vec))

    def random_vector(self, rng: random.Random) -> list[int]:
        """Each gene uniform among its allowed values, the learning rate among those inside the
        drawn optimizer's range (`lr_window`); one draw per gene, in vector order."""
        vec: list[int] = []
        for i, a in enumerate(self.allowed):
            pool = self.lr_window(vec[OPTIMIZER]) if i == LR else a  # the optimizer comes first
            vec.append(pool[rng.randint(0, len(pool) - 1)])
        return vec

    def lr_window(self, optimizer_raw: int) -> tuple[int, ...]:
        """The allowed learning rates (raw values) inside the optimizer's `genome.LR_RANGES`;
        every allowed one when the space leaves none there (a narrowing the user asked for wins)."""
        lo, hi = G.LR_RANGES[G.OPTIMIZERS[optimizer_raw]]
        inside = tuple(v for v in self.allowed[LR] if lo <= G.LRS[v] <= hi)
        return inside or self.allowed[LR]

    def fit_lr(self, vec: list, rng) -> list:
        """Redraw (in place, uniform) a learning rate outside the optimizer's range from inside it,
        so a child that took its optimizer from one parent and its rate from the other still
        trains.  Uniform, not the nearest value: snapping would pile children on the range's edges."""
        window = self.lr_window(vec[OPTIMIZER])
        if vec[LR] not in window:
            vec[LR] = window[rng.randint(0, len(window) - 1)]
        return vec

    def project(self, vec: list[int], rng: random.Random) -> list[int]:
        """Every gene outside the space moved inside: to the nearest allowed value of an ordered
        gene, to a random allowed value of another.  Genes inside stay (no draw)."""
        out = list(vec)
        for g, a in zip(GENES, self.allowed):
            if out[g.index] not in a:
                out[g.index] = (min(a, key=lambda v: (abs(v - out[g.index]), v)) if g.ordered
                                else a[rng.randint(0, len(a) - 1)])
        return out


# ---- the space file ----------------------------------------------------------------------
def _match(gene: Gene, value: Any, where: str) -> int:
    """The raw vector value of a value written in the file (numbers: 1e-2 == 0.01)."""
    for i, v in enumerate(gene.values):
        if isinstance(v, str):
            if value == v:
                return gene.low + i
            continue
        try:
            num = float(value)
        except (TypeError, ValueError):
            continue
        if not isinstance(value, bool) and math.isclose(num, float(v), rel_tol=1e-9, abs_tol=1e-12):
            return gene.low + i
    raise SpaceError(f"{where}: {json.dumps(value)} is not a value of this gene; expected one of "
                     f"{', '.join(json.dumps(v) for v in gene.values)}")


def _gene_allowed(gene: Gene, spec: Any, where: str) -> tuple[int, ...]:
    if isinstance(spec, list):
        spec = {"choices": spec}
    elif not isinstance(spec, dict):
        spec = {"fixed": spec}
    keys = set(spec)
    if not keys or not (keys <= {"min", "max"} or keys in ({"fixed"}, {"choices"})):
        raise SpaceError(f"{where}: expected one of fixed: V, choices: [V, ...] or min:/max:, found "
                         f"{', '.join(sorted(map(str, keys))) or 'nothing'}")
    if "fixed" in spec:
        return (_match(gene, spec["fixed"], f"{where}.fixed"),)
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise SpaceError(f"{where}.choices: expected a non-empty list of values")
        return tuple(sorted({_match(gene, v, f"{where}.choices") for v in spec["choices"]}))
    return _range(gene, spec, where)


def _range(gene: Gene, spec: dict, where: str) -> tuple[int, ...]:
    if not gene.ordered:
        raise SpaceError(f"{where}: min/max need an ordered gene; use choices: [...] (values: "
                         f"{', '.join(json.dumps(v) for v in gene.values)})")
    lo = _match(gene, spec["min"], f"{where}.min") if "min" in spec else gene.low
    hi = _match(gene, spec["max"], f"{where}.max") if "max" in spec else gene.low + len(gene.values) - 1
    if lo > hi:
        raise SpaceError(f"{where}: min {json.dumps(spec['min'])} is above max {json.dumps(spec['max'])}")
    return tuple(range(lo, hi + 1))


def _section(obj: Any, where: str, keys: tuple, top: bool = False) -> dict:
    """`obj`'s fields, each one of `keys`; `top`: `where` is the file's name, which a field
    follows after ': ' (never joined to it by a dot, as a field follows its section)."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise SpaceError(f"{where}: expected a mapping of {', '.join(keys)}")
    for k in obj:
        if str(k) not in keys:
            raise SpaceError(f"{where}{': ' if top else '.'}{k}: unknown field; expected one of {', '.join(keys)}")
    return {str(k): v for k, v in obj.items()}


def _per_unit(obj: Any, where: str, prefix: str, count: int, genes: tuple, allowed: list) -> None:
    """stages / head.fc: genes under `all` (every stage or layer) and under an index (one)."""
    units = _section(obj, where, ("all", *map(str, range(count))))
    for unit in ["all", *map(str, range(count))]:
        specs = _section(units.get(unit), f"{where}.{unit}", genes)
        for name, spec in specs.items():
            for i in (range(count) if unit == "all" else [int(unit)]):
                gene = BY_FIELD[f"{prefix}.{i}.{name}"]
                allowed[gene.index] = _gene_allowed(gene, spec, f"{where}.{unit}.{name}")


def parse_space(data: Any, where: str) -> Space:
    """A Space from the parsed file `data`; SpaceError names `where` and the field."""
    top = _section(data, where, ("fernas_space", "stages", "head", "train"), top=True)
    if top.get("fernas_space", SPACE_VERSION) != SPACE_VERSION:
        raise SpaceError(f"{where}: fernas_space {top['fernas_space']!r}: this fernas reads version {SPACE_VERSION}")
    allowed = list(Space.full().allowed)
    stages = _section(top.get("stages"), f"{where}: stages", ("count", "all", *map(str, range(G.MAX_STAGES))))
    if "count" in stages:
        allowed[0] = _gene_allowed(BY_FIELD["stages.count"], stages.pop("count"), f"{where}: stages.count")
    _per_unit(stages, f"{where}: stages", "stages", G.MAX_STAGES, G.STAGE_GENES, allowed)
    head = _section(top.get("head"), f"{where}: head", ("reduce", "fc_count", "fc"))
    for name in ("reduce", "fc_count"):
        if name in head:
            gene = BY_FIELD[f"head.{name}"]
            allowed[gene.index] = _gene_allowed(gene, head[name], f"{where}: head.{name}")
    _per_unit(head.get("fc"), f"{where}: head.fc", "head.fc", G.MAX_FC, G.FC_GENES, allowed)
    for name, spec in _section(top.get("train"), f"{where}: train", G.TRAIN_GENES).items():
        gene = BY_FIELD[f"train.{name}"]
        allowed[gene.index] = _gene_allowed(gene, spec, f"{where}: train.{name}")
    return Space(tuple(allowed))


def with_batch(space: Space, batch: int, where: str) -> Space:
    """`space` with the batch size fixed to `batch` (`fernas evolve --trial-batch`: every trial
    trains at it, so the search measures no other and a genome returns the batch it was
    measured at).  SpaceError when the space's batch sizes leave it out (`where`: the space)."""
    gene = BY_FIELD["train.batch_size"]
    if batch not in G.BATCH_SIZES:
        raise SpaceError(f"--trial-batch {batch}: expected 0 (each genome's own) or a batch size of the genome: "
                         f"{', '.join(map(str, G.BATCH_SIZES))}")
    value = G.BATCH_SIZES.index(batch)
    if value not in space.allowed[gene.index]:
        sizes = ", ".join(str(G.BATCH_SIZES[v]) for v in space.allowed[gene.index])
        raise SpaceError(f"{where}: its batch sizes ({sizes}) leave out --trial-batch {batch}, at which every trial "
                         f"trains; allow {batch}, or give --trial-batch 0 to train each genome at its own")
    allowed = list(space.allowed)
    allowed[gene.index] = (value,)
    return Space(tuple(allowed))


def at_batch(docs: list[dict], batch: int) -> list[dict]:
    """Genome documents (seed designs, a warm start's genomes) at the batch `with_batch` fixes
    the space to: the search measures them at it and returns them with it; 0: as they are."""
    return [{**d, "train": {**d["train"], "batch_size": batch}} for d in docs] if batch else list(docs)


def load_space(path: str | Path) -> Space:
    """Read and check a space file (YAML, or JSON by its name)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")  # YAML and JSON files are UTF-8, whatever the locale says
    except OSError as exc:
        raise SpaceError(f"{p}: cannot read the space file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{p}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         "expected a YAML or JSON space file in UTF-8") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            data = _load_yaml(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError: the parser's one-line reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpaceError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'} ({first})") from None
    if data is None:
        raise SpaceError(f"{p}: empty; expected a space file (`fernas space show > FILE` writes the full space)")
    return parse_space(data, str(p))


def _unique_keys(pairs: list) -> dict:
    """A mapping whose keys are all different: a key given twice (two `train:` sections) would
    silently drop the first one's constraints."""
    keys = [k for k, _ in pairs]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"the key {twice[0]!r} appears twice in one mapping")
    return dict(pairs)


def _load_yaml(text: str):
    """yaml.safe_load, refusing a key given twice in one mapping (PyYAML keeps the last)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        return _unique_keys([(loader.construct_object(k, deep=True), loader.construct_object(v, deep=True))
                             for k, v in node.value])

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=UniqueKeyLoader)


# ---- `fernas space show` -----------------------------------------------------------------
def _values_text(gene: Gene, raw: tuple[int, ...]) -> str:
    vals = [gene.values[r - gene.low] for r in raw]
    if len(vals) == 1:
        return f"{{fixed: {_yaml(vals[0])}}}"
    return "{choices: [" + ", ".join(_yaml(v) for v in vals) + "]}"


def _yaml(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _unit_lines(space: Space, prefix: str, count: int, genes: tuple, indent: str) -> list[str]:
    """Genes of every stage (or FC layer) under `all` when the units agree, else per unit."""
    per = [[space.allowed[BY_FIELD[f"{prefix}.{i}.{g}"].index] for g in genes] for i in range(count)]
    units = [("all", 0)] if all(p == per[0] for p in per) else [(str(i), i) for i in range(count)]
    lines = []
    for name, i in units:
        lines.append(f"{indent}{name}:")
        for g, raw in zip(genes, per[i]):
            gene = BY_FIELD[f"{prefix}.{i}.{g}"]
            note = "   # ordered: min/max work" if gene.ordered else ""
            lines.append(f"{indent}  {g}: {_values_text(gene, raw)}{note}")
    return lines


def show(space: Space) -> str:
    """The space as an editable YAML file (the full space: every value of every gene)."""
    def one(field: str, indent: str) -> str:
        gene = BY_FIELD[field]
        note = "   # ordered: min/max work" if gene.ordered else ""
        return f"{indent}{field.split('.')[-1]}: {_values_text(gene, space.allowed[gene.index])}{note}"

    lines = ["# fernas search space: edit it, then  fernas evolve --space FILE",
             "# Per gene one of  fixed: V | choices: [V, ...] | min: V, max: V (ordered genes);",
             "# a gene left out keeps every value.  Stage and FC genes: 'all' (every one) or an index (one).",
             "# inverted_residual_tN: a MobileNetV2 inverted-residual block with expansion N.",
             f"fernas_space: {SPACE_VERSION}", "stages:", one("stages.count", "  ")]
    lines += _unit_lines(space, "stages", G.MAX_STAGES, G.STAGE_GENES, "  ")
    lines += ["head:", one("head.reduce", "  "), one("head.fc_count", "  "), "  fc:"]
    lines += _unit_lines(space, "head.fc", G.MAX_FC, G.FC_GENES, "    ")
    lines += ["train:"] + [one(f"train.{g}", "  ") for g in G.TRAIN_GENES]
    return "\n".join(lines) + "\n"

"""Genome document -> build plan -> `torch.nn.Module`, layer table, parameters and multiply-adds.

One walk over the genome, `plan(doc)`, decides the network in pure Python: each layer with
its output shape, parameters and multiply-adds, plus the deterministic repairs.  `FERNet`
(`build_model`) builds one module per planned layer, `summarize` prints the plan as a table,
and `estimate_macs` sums it (the search calls it in rejection-sampling loops: microseconds).
A layer's spec both builds its module and counts its cost, so the two stay side by side.

Block types (`BLOCKS`; a new one is a `Spec` subclass here plus its genes in `fernas.genome`):

* `conv`: Conv(k x k, bias) -> BatchNorm -> ReLU, the block of the VGG of Khaireddin & Chen
  (seeds 000/002, whose public code uses biased convolutions before BN);
* `inverted_residual`: MobileNetV2's 1x1 expand -> k x k depthwise -> 1x1 linear project,
  with a residual when input and output widths match (seed 003).

Blocks keep the spatial size; a stage ends with its pool (2x2, stride 2) and dropout.
The head either flattens the feature map (VGG) or global-average-pools it, then 0-3 fully
connected layers (Linear -> ReLU -> Dropout) and the classifier.

Input: (B, 1, H, W) float in [0, 1].  The model is built for `input_size` (40: ten-crop
size).  A flatten head first adaptive-average-pools to the feature-map size it was built
for, so a model built at 40x40 also runs at 48x48 (at 40x40 that pool is the identity).
Repairs (recorded in `plan.repairs`, `model.repairs`): a pool that would shrink a map
below 1x1 is dropped; a flatten wider than `MAX_FLATTEN` is average-pooled down first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fernas.genome import validate

# Largest flattened feature vector a flatten head may feed its first linear layer
# (VGG's is 512x2x2 = 2,048; the seeds' largest is 384x5x5 = 9,600).
MAX_FLATTEN = 16384


# ---- modules ---------------------------------------------------------------------------
class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=True),  # 'same' size
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018), stride 1: the stage's pool does the downsampling."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.use_res = in_ch == out_ch  # decided once: stride is always 1 here
        layers: list[nn.Module] = []
        if expansion != 1:  # expand
            layers += [nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [  # depthwise
            nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            # project (linear bottleneck: no activation)
            nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


# ---- layer specs: each builds its module and counts its cost ----------------------------
class Spec:
    """A planned layer: `build()` returns a `module`; `params()` and `macs(size)` are its cost
    per image (size: side of the square input map).  Layers without cost keep the zeros."""
    __slots__ = ()
    module: ClassVar[type]

    def build(self) -> nn.Module:
        raise NotImplementedError

    def params(self) -> int:
        return 0

    def macs(self, size: int = 0) -> int:
        return 0

    def activations(self, shape: tuple[int, ...]) -> int:
        """Activation elements the layer's forward pass writes per image (its output of `shape`
        by default); with the multiply-adds, what a training step costs in memory traffic."""
        return math.prod(shape)


@dataclass(slots=True)
class ConvSpec(Spec):  # a block spec also has `out_ch` and `from_stage(stage, in_ch)`
    in_ch: int
    out_ch: int
    kernel: int
    module: ClassVar[type] = ConvBNReLU

    @classmethod
    def from_stage(cls, stage: dict, in_ch: int) -> ConvSpec:
        return cls(in_ch, stage["width"], stage["kernel"])

    def build(self) -> nn.Module:
        return ConvBNReLU(self.in_ch, self.out_ch, self.kernel)

    def params(self) -> int:  # conv weight and bias, BN weight and bias
        return self.out_ch * (self.in_ch * self.kernel ** 2 + 1) + 2 * self.out_ch

    def macs(self, size: int) -> int:
        return size * size * self.in_ch * self.out_ch * self.kernel ** 2

    def activations(self, shape: tuple[int, ...]) -> int:  # conv, BN, ReLU: three passes over the map
        return 3 * math.prod(shape)


@dataclass(slots=True)
class InvertedResidualSpec(Spec):
    in_ch: int
    out_ch: int
    kernel: int
    expansion: int
    module: ClassVar[type] = InvertedResidual

    @classmethod
    def from_stage(cls, stage: dict, in_ch: int) -> InvertedResidualSpec:
        return cls(in_ch, stage["width"], stage["kernel"], stage["expansion"])

    def build(self) -> nn.Module:
        return InvertedResidual(self.in_ch, self.out_ch, self.kernel, self.expansion)

    def _convs(self) -> list[tuple[int, int, int]]:
        """(input channels per group, output channels, kernel) of each bias-free conv."""
        hidden = self.in_ch * self.expansion
        expand = [(self.in_ch, hidden, 1)] if self.expansion != 1 else []
        return expand + [(1, hidden, self.kernel), (hidden, self.out_ch, 1)]  # depthwise, project

    def params(self) -> int:  # each conv is followed by a BN (weight and bias)
        return sum(i * o * k * k + 2 * o for i, o, k in self._convs())

    def macs(self, size: int) -> int:
        return size * size * sum(i * o * k * k for i, o, k in self._convs())

    def activations(self, shape: tuple[int, ...]) -> int:
        """Expand and depthwise maps (hidden channels, conv + BN + ReLU6 each), the projection
        (conv + BN) and the residual sum: the expanded maps at full size dominate."""
        hw = shape[1] * shape[2]
        convs = self._convs()
        hidden = sum(3 * o for _, o, _ in convs[:-1])
        return hw * (hidden + 2 * self.out_ch + (self.out_ch if self.in_ch == self.out_ch else 0))


# A stage's "block" gene -> its spec class.
BLOCKS: dict[str, type[Spec]] = {"conv": ConvSpec, "inverted_residual": InvertedResidualSpec}


@dataclass(slots=True)
class LinearSpec(Spec):
    in_features: int
    out_features: int
    module: ClassVar[type] = nn.Linear

    def build(self) -> nn.Module:
        return nn.Linear(self.in_features, self.out_features)

    def params(self) -> int:
        return (self.in_features + 1) * self.out_features

    def macs(self, size: int = 0) -> int:
        return self.in_features * self.out_features


@dataclass(slots=True)
class PlainSpec(Spec):
    """Pool, dropout or activation: `module(*args)`."""
    module: type
    args: tuple = ()

    def build(self) -> nn.Module:
        return self.module(*self.args)


@dataclass(slots=True)
class ReduceSpec(Spec):
    """(C, H, W) -> (C * size * size,): adaptive average pool, then flatten (size 1: global pool)."""
    size: int
    module: ClassVar[type] = nn.Sequential

    def build(self) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(self.size), nn.Flatten())


POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


# ---- the plan --------------------------------------------------------------------------
@dataclass(slots=True)
class Layer:
    name: str  # module name inside `features` or `classifier` ("reduce" for the reduce)
    spec: Spec
    shape: tuple[int, ...]  # output per image: (C, H, W) in features, (N,) from the reduce on
    params: int
    macs: int  # multiply-adds per image

    @property
    def kind(self) -> str:  # the module's class name, e.g. "ConvBNReLU"
        return self.spec.module.__name__


@dataclass(slots=True)
class Plan:
    features: list[Layer]  # stages: blocks, pools, dropouts
    reduce: Layer  # (C, H, W) -> (N,)
    classifier: list[Layer]  # fully connected layers (+ ReLU, dropout) and the classifier
    repairs: list[str]
    feature_size: int  # side of the last feature map at input_size

    @property
    def layers(self) -> list[Layer]:
        return [*self.features, self.reduce, *self.classifier]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def activations(self) -> int:
        """Activation elements the forward pass writes per image (`Spec.activations`)."""
        return sum(layer.spec.activations(layer.shape) for layer in self.layers)

    @property
    def peak_activation(self) -> int:
        """Activation elements of the largest layer per image (an inverted residual's expanded
        tensors included): what sizes an inference batch."""
        return max(layer.spec.activations(layer.shape) for layer in self.layers)


def _layer(name: str, spec: Spec, shape: tuple[int, ...], size: int = 0) -> Layer:
    return Layer(name, spec, shape, spec.params(), spec.macs(size))


def plan(doc: dict, input_size: int = 40, num_classes: int = 7, in_channels: int = 1) -> Plan:
    """The network `doc` decodes to, without building it (pure Python, tens of microseconds).

    `doc` must be validated (`fernas.genome.validate`; the genome module only returns such):
    validating costs more than planning, and the search plans every random draw."""
    repairs: list[str] = []
    features, ch, size = _plan_stages(doc["stages"], in_channels, input_size, repairs)
    reduce = _plan_reduce(doc["head"]["reduce"], ch, size, repairs)
    classifier = _plan_classifier(doc["head"]["fc"], reduce.shape[0], num_classes)
    return Plan(features, reduce, classifier, repairs, size)


def _plan_stages(stages: list[dict], ch: int, input_size: int, repairs: list[str]):
    """Blocks, pools and dropouts -> (layers, channels and side of the last map)."""
    layers, size = [], input_size
    for s, stage in enumerate(stages):
        if stage["block"] not in BLOCKS:
            raise ValueError(f"unknown block type {stage['block']!r}")
        for r in range(stage["repeats"]):
            spec = BLOCKS[stage["block"]].from_stage(stage, ch)
            ch = spec.out_ch
            layers.append(_layer(f"stage{s}_block{r}", spec, (ch, size, size), size))
        if stage["pool"] != "none":
            if size // 2 < 1:
                repairs.append(
                    f"stages[{s}].pool: dropped the {stage['pool']}-pool, the {size}x{size} feature map "
                    f"would vanish (input {input_size}x{input_size})")
            else:
                size //= 2
                layers.append(_layer(f"stage{s}_pool", PlainSpec(POOLS[stage["pool"]], (2,)), (ch, size, size)))
        if stage["dropout"] > 0:
            layers.append(_layer(f"stage{s}_dropout", PlainSpec(nn.Dropout, (stage["dropout"],)), (ch, size, size)))
    return layers, ch, size


def _plan_reduce(reduce: str, ch: int, size: int, repairs: list[str]) -> Layer:
    if reduce != "flatten":  # global average pool: (C, H, W) -> (C,)
        return _layer("reduce", ReduceSpec(1), (ch,))
    # The pool is the identity at input_size; it lets a bigger input (48x48) reach the same width.
    flat = size
    if ch * size * size > MAX_FLATTEN:
        # A flatten of e.g. 512x40x40 = 819,200 features into FC 4096 would be 3.4e9
        # parameters: shrink the map (deterministically) to fit MAX_FLATTEN.
        flat = max(1, int((MAX_FLATTEN / ch) ** 0.5))
        repairs.append(
            f"head.reduce: flatten of {ch}x{size}x{size} = {ch * size * size:,} features exceeds "
            f"{MAX_FLATTEN:,}; average-pooled to {ch}x{flat}x{flat} first")
    return _layer("reduce", ReduceSpec(flat), (ch * flat * flat,))


def _plan_classifier(fcs: list[dict], width: int, num_classes: int) -> list[Layer]:
    """0-3 x (Linear -> ReLU -> Dropout), then the classifier: (width,) -> (num_classes,)."""
    layers = []
    for i, fc in enumerate(fcs):
        out = (fc["width"],)
        layers.append(_layer(f"fc{i}", LinearSpec(width, fc["width"]), out))
        layers.append(_layer(f"fc{i}_relu", PlainSpec(nn.ReLU, (True,)), out))  # in place
        if fc["dropout"] > 0:
            layers.append(_layer(f"fc{i}_dropout", PlainSpec(nn.Dropout, (fc["dropout"],)), out))
        width = fc["width"]
    layers.append(_layer("classifier", LinearSpec(width, num_classes), (num_classes,)))
    return layers


# ---- consumers of the plan -------------------------------------------------------------
def _sequential(layers: list[Layer]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((layer.name, layer.spec.build()) for layer in layers))


class FERNet(nn.Module):
    """A decoded genome: `features` (stages) -> `reduce` -> `classifier`, built from `plan(doc)`."""

    def __init__(self, doc: dict, input_size: int = 40, num_classes: int = 7, in_channels: int = 1):
        super().__init__()
        p = plan(validate(doc), input_size, num_classes, in_channels)
        self.input_size = input_size
        self.num_classes = num_classes
        self.repairs: list[str] = list(p.repairs)
        # Built in plan order, so a seeded build draws the same initial weights every time.
        self.features = _sequential(p.features)
        self.feature_size = p.feature_size  # spatial size of the last map at input_size
        self.reduce = p.reduce.spec.build()
        self.classifier = _sequential(p.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, num_classes) logits
        return self.classifier(self.reduce(self.features(x)))


def build_model(doc: dict, input_size: int = 40, num_classes: int = 7) -> FERNet:
    """Pure function: the same document always gives the same architecture."""
    return FERNet(doc, input_size=input_size, num_classes=num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# What one activation element costs in training time, in multiply-adds.  Measured on this
# project's 2-core CPU (benchmarks/cost_model.py, results/cost_model.json): a trial's seconds
# per image follow the activation elements its network writes far better than its multiply-adds
# under the demo's cost caps (depthwise and 1x1 convolutions on full-size maps are memory-bound),
# while the seed designs of 34-820 MMAC need both terms.
ACTIVATION_COST_MACS = 100


def training_cost(p: Plan) -> int:
    """A network's training cost per image in multiply-add equivalents: its multiply-adds plus
    ACTIVATION_COST_MACS per activation element of the forward pass."""
    return p.macs + ACTIVATION_COST_MACS * p.activations


# Host memory of a CPU trial (fp32): per parameter weights, gradients and up to two optimizer
# states; per activation element its forward value (kept for backward) and its gradient.  In
# evaluation (no gradients) the peak is the largest layer's input and output: `peak_activation`
# counts a conv block's conv, norm and activation outputs (three), 4 bytes each per crop came out
# at or above the measured peak (benchmarks/memory_estimate.py: 1.0-2.9x a trial's growth).
PARAM_BYTES, ACTIVATION_BYTES, EVAL_BYTES, EVAL_CROPS = 4 * 4, 4 * 2, 4, 512


def training_memory_bytes(p: Plan, batch: int) -> int:
    """About the memory a trial's tensors take on a CPU (data excluded): training a batch or
    evaluating EVAL_CROPS crops without gradients, whichever is more."""
    train = p.params * PARAM_BYTES + p.activations * batch * ACTIVATION_BYTES
    return max(train, p.params * PARAM_BYTES + p.peak_activation * EVAL_CROPS * EVAL_BYTES)


def estimate_cost(doc: dict, input_size: int = 40, num_classes: int = 7) -> int:
    """`training_cost` of a validated document (the search's --max-cost and trial order)."""
    return training_cost(plan(doc, input_size, num_classes))


def estimate_macs(doc: dict, input_size: int = 40, num_classes: int = 7) -> int:
    """Multiply-adds per image of a validated document, from its plan (nothing is built): the
    search calls it in rejection-sampling loops (--max-mmacs) and to order trials by cost."""
    return plan(doc, input_size, num_classes).macs


def summarize(doc: dict, input_size: int = 40, num_classes: int = 7) -> dict:
    """Layer table (name, type, output shape, params), totals and multiply-adds per image."""
    doc = validate(doc)
    p = plan(doc, input_size, num_classes)
    rows = [{"layer": layer.name, "type": layer.kind, "output_shape": list(layer.shape), "params": layer.params}
            for layer in p.layers]
    return {"name": doc["name"], "input": [1, input_size, input_size], "layers": rows,
            "params": p.params, "macs": p.macs, "repairs": list(p.repairs)}

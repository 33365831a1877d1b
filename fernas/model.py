"""Genome document -> `torch.nn.Module`, plus a layer table with parameters and multiply-adds.

The network is a settings table expanded by one loop that threads `in_ch = out_ch`, in the
manner of torchvision's MobileNetV2.  Two block types:

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
A pool that would shrink a map below 1x1 is dropped (a deterministic repair, recorded in
`model.repairs`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fernas.genome import validate

# Largest flattened feature vector a flatten head may feed its first linear layer
# (VGG's is 512x2x2 = 2,048; the seeds' largest is 384x5x5 = 9,600).
MAX_FLATTEN = 16384


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


def _make_block(stage: dict, in_ch: int) -> nn.Module:
    if stage["block"] == "conv":
        return ConvBNReLU(in_ch, stage["width"], stage["kernel"])
    if stage["block"] == "inverted_residual":
        return InvertedResidual(in_ch, stage["width"], stage["kernel"], stage["expansion"])
    raise ValueError(f"unknown block type {stage['block']!r}")


def _make_pool(kind: str) -> nn.Module:
    return nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)


class FERNet(nn.Module):
    """A decoded genome: `features` (stages) -> `reduce` -> `classifier`."""

    def __init__(self, doc: dict, input_size: int = 40, num_classes: int = 7, in_channels: int = 1):
        super().__init__()
        doc = validate(doc)
        self.input_size = input_size
        self.num_classes = num_classes
        self.repairs: list[str] = []
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        in_ch, size = in_channels, input_size
        for s, stage in enumerate(doc["stages"]):
            for r in range(stage["repeats"]):
                layers[f"stage{s}_block{r}"] = _make_block(stage, in_ch)
                in_ch = stage["width"]
            if stage["pool"] != "none":
                if size // 2 < 1:
                    self.repairs.append(
                        f"stages[{s}].pool: dropped the {stage['pool']}-pool, the {size}x{size} feature map "
                        f"would vanish (input {input_size}x{input_size})")
                else:
                    layers[f"stage{s}_pool"] = _make_pool(stage["pool"])
                    size //= 2
            if stage["dropout"] > 0:
                layers[f"stage{s}_dropout"] = nn.Dropout(stage["dropout"])
        self.features = nn.Sequential(layers)
        self.feature_size = size  # spatial size of the last map at input_size

        if doc["head"]["reduce"] == "flatten":
            # Identity at input_size; lets a bigger input (48x48) reach the same flat width.
            flat_size = size
            if in_ch * size * size > MAX_FLATTEN:
                # A flatten of e.g. 512x40x40 = 819,200 features into FC 4096 would be 3.4e9
                # parameters: shrink the map (deterministically) to fit MAX_FLATTEN.
                flat_size = max(1, int((MAX_FLATTEN / in_ch) ** 0.5))
                self.repairs.append(
                    f"head.reduce: flatten of {in_ch}x{size}x{size} = {in_ch * size * size:,} features exceeds "
                    f"{MAX_FLATTEN:,}; average-pooled to {in_ch}x{flat_size}x{flat_size} first")
            self.reduce = nn.Sequential(nn.AdaptiveAvgPool2d(flat_size), nn.Flatten())
            width = in_ch * flat_size * flat_size
        else:
            self.reduce = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            width = in_ch
        head: "OrderedDict[str, nn.Module]" = OrderedDict()
        for i, fc in enumerate(doc["head"]["fc"]):
            head[f"fc{i}"] = nn.Linear(width, fc["width"])
            head[f"fc{i}_relu"] = nn.ReLU(inplace=True)
            if fc["dropout"] > 0:
                head[f"fc{i}_dropout"] = nn.Dropout(fc["dropout"])
            width = fc["width"]
        head["classifier"] = nn.Linear(width, num_classes)
        self.classifier = nn.Sequential(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, num_classes) logits
        return self.classifier(self.reduce(self.features(x)))


def build_model(doc: dict, input_size: int = 40, num_classes: int = 7) -> FERNet:
    """Pure function: the same document always gives the same architecture."""
    return FERNet(doc, input_size=input_size, num_classes=num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _macs_of(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-adds of one Conv2d/Linear call, from its output shape."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out.numel() // out.shape[0] * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def estimate_macs(doc: dict, input_size: int = 40, num_classes: int = 7) -> int:
    """Multiply-adds per image from the document alone, in microseconds (no model is built).

    Mirrors `FERNet` (conv / inverted residual, pools and their repair, flatten cap) and must
    equal `summarize(doc)["macs"]` (tested); the search calls it in rejection-sampling loops
    to keep genomes under --max-mmacs and to order trials by cost.
    """
    in_ch, size, macs = 1, input_size, 0
    for st in doc["stages"]:
        w, k = st["width"], st["kernel"]
        for _ in range(st["repeats"]):
            hw = size * size
            if st["block"] == "conv":
                macs += hw * in_ch * w * k * k
            else:
                hid = in_ch * st["expansion"]
                macs += (hw * in_ch * hid if st["expansion"] != 1 else 0) + hw * hid * k * k + hw * hid * w
            in_ch = w
        if st["pool"] != "none" and size // 2 >= 1:
            size //= 2
    if doc["head"]["reduce"] == "flatten":
        flat = in_ch * size * size
        if flat > MAX_FLATTEN:
            s = max(1, int((MAX_FLATTEN / in_ch) ** 0.5))
            flat = in_ch * s * s
    else:
        flat = in_ch
    for fc in doc["head"]["fc"]:
        macs += flat * fc["width"]
        flat = fc["width"]
    return int(macs + flat * num_classes)


def summarize(doc: dict, input_size: int = 40, num_classes: int = 7) -> dict:
    """Layer table (name, type, output shape, params), totals and multiply-adds per image."""
    # Shapes and counts only: build and run on the meta device (no memory, no compute),
    # so summarising a 10-GMAC genome costs milliseconds (the search calls this per trial).
    with torch.device("meta"):
        model = build_model(doc, input_size=input_size, num_classes=num_classes).eval()
    rows: list[dict] = []
    macs = [0]
    hooks = []

    def leaf_hook(module, _inp, out):
        macs[0] += _macs_of(module, out)

    def row_hook(name):
        def hook(module, _inp, out):
            rows.append({"layer": name, "type": type(module).__name__, "output_shape": list(out.shape[1:]),
                         "params": count_params(module)})
        return hook

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(leaf_hook))
    for name, m in list(model.features.named_children()) + [("reduce", model.reduce)] + list(
            model.classifier.named_children()):
        hooks.append(m.register_forward_hook(row_hook(name)))
    with torch.no_grad():
        model(torch.zeros(1, 1, input_size, input_size, device="meta"))
    for h in hooks:
        h.remove()
    return {"name": validate(doc)["name"], "input": [1, input_size, input_size], "layers": rows,
            "params": count_params(model), "macs": int(macs[0]), "repairs": list(model.repairs)}

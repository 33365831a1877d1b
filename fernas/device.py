"""Devices and precision: which device a run uses, whether it autocasts to bf16, and the
device-dependent sizes of the trainer and the evaluator.

The precision policy follows the fast public trainers (airbench, nanoGPT): bf16 autocast
where the hardware computes bf16 natively (CUDA cards from Ampere on, CPUs with AVX512-BF16
or AMX), fp32 elsewhere.  bf16 keeps fp32's exponent range, so no loss scaling is needed.

Errors here name the device, never a command-line flag: a command restates a `DeviceError`
in terms of its own flag (`fernas.commands.common.device_from_args`).
"""

from __future__ import annotations

import contextlib
import platform

import torch

from fernas.errors import SettingError

PRECISIONS = ("auto", "bf16", "fp32")


class DeviceError(SettingError):
    """A device name that names no usable device here."""

    def __init__(self, shown: str, reason: str, hint: str = ""):
        super().__init__("device", shown, reason, hint)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` -> cuda when available else cpu; `cuda` without a GPU is a DeviceError."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(name, "no CUDA GPU is available here (torch.cuda.is_available() is False)",
                              "use {name} cpu or auto")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(name, f"only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    raise DeviceError(repr(name), "expected auto, cpu or cuda")


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def default_amp(device: torch.device) -> bool:
    """Whether to autocast to bf16: on CUDA cards with native bf16; on CPU only with native bf16 units.

    Measured on the 2-core AMD EPYC (AVX512-BF16) this project develops on: bf16 autocast
    trained the MobileNetV2-style seed about 2x and the VGG about 3-6x faster than fp32
    (benchmarks/train.py prints both); without native bf16 the conversions cost more than
    they save, so fp32 stays.
    """
    if device.type == "cuda":
        # Ampere and newer; an older card (T4, V100) would emulate bf16 slowly: stay in fp32.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_has_native_bf16()


def amp_for(precision: str, device: torch.device) -> bool:
    """bf16 autocast on or off for a precision name: auto (`default_amp`), bf16 or fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return default_amp(device) if precision == "auto" else precision == "bf16"


def amp_context(device: torch.device, enabled: bool):
    """bf16 autocast on the device when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def eval_batch_size(device: torch.device) -> int:
    """Crops per evaluation forward pass: a GPU is only busy with thousands at once; on CPU
    512 crops of 40x40 keep the activations of the VGG within a few hundred MB."""
    return 4096 if device.type == "cuda" else 512


def check_interval(device: torch.device) -> int:
    """Training steps between finiteness checks of the loss.  A check reads a value back from
    the device, which stalls a GPU's queue of kernels: every 25 steps there, every step on CPU
    (where it is free)."""
    return 1 if device.type == "cpu" else 25


def device_name(device: torch.device) -> str:
    """The card's name, or the CPU's with the number of torch threads (for config.json)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads)"

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


EVAL_CROPS_CPU = 512  # 40x40 crops of the VGG within a few hundred MB
EVAL_CROPS_MAX = 4096  # a GPU is only busy with thousands at once
EVAL_MEMORY_SHARE = 0.5  # of the memory this process may still take, for one evaluation batch
_memory_fraction = {"share": 1.0}  # set by cap_gpu_memory


def eval_batch_size(device: torch.device, doc: dict | None = None, free_bytes: int | None = None) -> int:
    """Crops per evaluation forward pass.  On a GPU, sized from the genome's largest layer
    activation (fp32, its input and output alive at once) and the memory this process may
    still take (its share of the card, `cap_gpu_memory`): a fixed 4096 would need 20 GB for one
    wide inverted residual under the default cost cap.  `free_bytes` overrides the measurement."""
    if device.type != "cuda":
        return EVAL_CROPS_CPU
    if doc is None:
        return EVAL_CROPS_MAX
    from fernas.model import plan

    per_crop = plan(doc).peak_activation * 4 * 2
    if free_bytes is None:
        free, total = torch.cuda.mem_get_info(device)
        allowed = total * _memory_fraction["share"] - torch.cuda.memory_reserved(device)
        free_bytes = int(min(free, allowed))
    crops = int(max(0, free_bytes) * EVAL_MEMORY_SHARE // max(1, per_crop))
    return max(16, min(EVAL_CROPS_MAX, crops))


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


class GPUUnusable(RuntimeError):
    """GPUs were reserved for this process but torch cannot use them."""


# The oldest NVIDIA driver each CUDA major release of torch needs (minor-version compatibility).
MIN_DRIVER = {"13": "580", "12": "525", "11": "450"}


def cuda_unusable_reason() -> str:
    """Why torch sees no GPU although the machine (Ray, nvidia-smi) has one: the build's CUDA
    and the driver it needs."""
    built = torch.version.cuda
    if not built:
        return f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build"
    need = MIN_DRIVER.get(built.split(".")[0], "a recent")
    return (f"torch {torch.__version__} is built for CUDA {built}, which needs NVIDIA driver {need} or newer "
            "(nvidia-smi shows the installed one); update the driver or install a torch build for an older CUDA")


def trial_device(gpu_share: float, gpu_ids: list, cuda_available: bool) -> torch.device:
    """The device of a search trial.  Ray 2.60 no longer hides the GPUs from trials without a
    GPU share, so `auto` would put them on an unreserved card: CUDA only when the trial was
    given a share (or Ray assigned it GPU ids).  A reserved GPU that torch cannot use is a
    `GPUUnusable` error (the trial fails with the reason), never a silent CPU trial."""
    if gpu_share <= 0 and not gpu_ids:
        return torch.device("cpu")
    if not cuda_available:
        raise GPUUnusable(f"Ray reserved GPU {','.join(map(str, gpu_ids)) or gpu_share} for this trial but "
                          f"torch.cuda.is_available() is False: {cuda_unusable_reason()}")
    return torch.device("cuda")  # Ray sets CUDA_VISIBLE_DEVICES to the trial's card


CUDA_CONTEXT_ERRORS = ("illegal memory access", "device-side assert", "unspecified launch failure",
                       "misaligned address", "an illegal instruction")


def is_cuda_context_error(exc: BaseException) -> bool:
    """An error after which the process's CUDA context is unusable (every later kernel fails)."""
    text = str(exc).lower()
    return any(e in text for e in CUDA_CONTEXT_ERRORS)


def release_cuda_memory() -> None:
    """Give the memory of a finished trial back to the card: collect the objects a trial's
    frames or traceback held, then return cached blocks (a reused worker keeps no peak)."""
    import gc

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return  # a CPU trial: nothing held on a card, no collection to pay for per trial
    gc.collect()
    with contextlib.suppress(RuntimeError):  # a broken context raises here: its process ends anyway
        torch.cuda.empty_cache()


CONTEXT_RESERVE = 0.92  # of a trial's share: each process's CUDA context and cuDNN workspace live outside the cap


def cap_gpu_memory(share: float, device: torch.device) -> float | None:
    """Limit this process to a little under its GPU share of the card's memory (four 0.25
    trials cannot take each other's); returns the fraction set, None off CUDA or for a whole card."""
    if device.type != "cuda" or not 0 < share < 1:
        return None
    fraction = share * CONTEXT_RESERVE
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    _memory_fraction["share"] = fraction
    return fraction

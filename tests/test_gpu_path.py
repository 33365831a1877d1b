"""The GPU path's decisions, checked without a GPU: a trial's device, an unusable GPU, a lost
CUDA context, the evaluation batch from a genome's activations, optimizer flags and RNG states
across devices, checkpoints written without an in-memory copy."""

from __future__ import annotations

import pytest
import torch

from fernas.device import (GPUUnusable, cuda_unusable_reason, eval_batch_size, is_cuda_context_error,
                           trial_device)
from fernas.genome import load_genome
from fernas.recipe import device_flags, make_optimizer, with_device_flags
from fernas.train_checkpoint import rng_states, set_rng_states

CUDA = torch.device("cuda")


def test_a_trial_without_a_gpu_share_trains_on_the_cpu_even_where_cuda_works():
    assert trial_device(0.0, [], cuda_available=True).type == "cpu"
    assert trial_device(0.25, [0], cuda_available=True).type == "cuda"
    assert trial_device(0.0, [1], cuda_available=True).type == "cuda"  # Ray gave it a card


def test_a_reserved_gpu_torch_cannot_use_fails_the_trial_with_the_reason():
    with pytest.raises(GPUUnusable, match=r"reserved GPU 0 .* torch.cuda.is_available\(\) is False") as info:
        trial_device(0.25, [0], cuda_available=False)
    assert torch.__version__ in str(info.value)
    if torch.version.cuda:  # the CUDA build: the driver it needs
        assert f"CUDA {torch.version.cuda}" in cuda_unusable_reason() and "driver" in cuda_unusable_reason()


def test_cuda_context_errors_are_told_apart_from_the_genomes_own():
    assert is_cuda_context_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_cuda_context_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_cuda_context_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_cuda_context_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))


def test_eval_batch_is_sized_from_the_largest_activation_and_the_memory_left():
    from fernas.model import plan

    vgg = load_genome("genomes/vgg_khaireddin.json")
    mobile = load_genome("genomes/daocong_mobilenetv2.json")
    assert eval_batch_size(torch.device("cpu"), vgg) == 512
    gib = 1 << 30
    big, small = eval_batch_size(CUDA, vgg, free_bytes=8 * gib), eval_batch_size(CUDA, mobile, free_bytes=8 * gib)
    assert 16 <= big <= 4096 and 16 <= small <= 4096
    per_crop = plan(vgg).peak_activation * 8
    assert big == min(4096, int(8 * gib * 0.5 // per_crop))  # half of what is left, fp32 in and out
    assert eval_batch_size(CUDA, vgg, free_bytes=0) == 16  # never zero: out of memory halves further
    # the wide genome of the issue: a 256-wide stage, then an inverted residual with expansion 6 at 40x40
    wide = {**vgg, "stages": [{"block": "conv", "repeats": 1, "width": 256, "kernel": 3, "dropout": 0.0, "pool": "none"},
                              {"block": "inverted_residual", "expansion": 6, "repeats": 1, "width": 256, "kernel": 3,
                               "dropout": 0.0, "pool": "max"}]}
    assert plan(wide).peak_activation >= 6 * 256 * 40 * 40
    assert eval_batch_size(CUDA, wide, free_bytes=20 * gib) < 4096 // 4


def test_evaluation_halves_its_batch_on_out_of_memory():
    from fernas.evaluate import crop_logits

    class Tight(torch.nn.Module):  # "out of memory" above 40 crops at once
        def forward(self, x):
            if x.shape[0] > 40:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return x.mean((1, 2, 3)).unsqueeze(1).repeat(1, 7)

    model = Tight()
    model.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    x = torch.randint(0, 256, (13, 48, 48), dtype=torch.uint8)
    out = crop_logits(model, x, crops=10, batch_crops=512)
    assert out.shape == (13, 7)
    assert torch.allclose(out, crop_logits(model, x, crops=10, batch_crops=40))


@pytest.mark.parametrize("name, flag", [("asgd", "capturable"), ("adadelta", "capturable"), ("adam", "fused"),
                                        ("nesterov", "fused")])
def test_optimizers_use_fused_or_capturable_updates_on_cuda_only(name, flag):
    assert device_flags(name, cuda=True) == {flag: True}
    assert device_flags(name, cuda=False) == {flag: False}
    p = [torch.nn.Parameter(torch.randn(4))]
    opt = make_optimizer(p, {"optimizer": name, "lr": 0.01})
    assert opt.param_groups[0][flag] is False  # CPU parameters
    p[0].grad = torch.ones(4)
    opt.step()  # a step counter in the state
    # a state written on a GPU (its groups carry the CUDA flags) resumes on the CPU
    state = opt.state_dict()
    state["param_groups"][0][flag] = True
    fresh = make_optimizer(p, {"optimizer": name, "lr": 0.01})
    fresh.load_state_dict(with_device_flags(state, name, cuda=False))
    fresh.step()
    assert fresh.param_groups[0][flag] is False
    assert with_device_flags(state, name, cuda=True)["param_groups"][0][flag] is True


def test_rng_states_of_another_device_reseed_deterministically_and_say_so():
    gen = torch.Generator().manual_seed(5)
    states = rng_states(gen)
    assert states["generator_device"] == "cpu"
    gen.manual_seed(99)
    assert set_rng_states(states, gen, reseed=1) is None  # same device: restored exactly
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    from_gpu = {**states, "generator": torch.zeros(16, dtype=torch.uint8), "generator_device": "cuda",
                "cuda_devices": 1}
    note = set_rng_states(from_gpu, gen, reseed=42)
    assert note and "written on cuda" in note and "seed derived" in note
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(42)))


def test_checkpoints_are_written_without_a_copy_in_memory_and_never_half(tmp_path, monkeypatch):
    import io

    from fernas.io import atomic_torch_save

    targets = []
    real = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, **kw: targets.append(f) or real(obj, f, **kw))
    atomic_torch_save({"w": torch.zeros(1000)}, tmp_path / "ck.pt")
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["w"].shape == (1000,)
    assert len(targets) == 1 and not isinstance(targets[0], io.BytesIO)  # the temporary file itself
    with pytest.raises(Exception):
        atomic_torch_save({"bad": lambda: 0}, tmp_path / "ck.pt")  # cannot be pickled
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # the old file stays, no temporary left
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["w"].shape == (1000,)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine `make gpu-check` runs the real checks")
def test_gpu_check_says_there_is_no_gpu_and_exits_0():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip().splitlines() == [
        "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check"]


def test_gpu_check_refuses_an_unknown_step_in_one_line():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--from", "evolve"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "evolve-shared-card" in res.stderr and "Traceback" not in res.stderr


def test_an_optional_output_that_fails_is_one_warning_not_the_end_of_a_run(capsys):
    from fernas.io import best_effort

    def broken():
        raise RuntimeError("unsupported operator aten::foo\nmore detail")

    assert best_effort("RUN/model-tencrop.onnx", "fernas export RUN/model.pt --ten-crop writes it", broken) is False
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fernas: warning: RUN/model-tencrop.onnx not written (RuntimeError: unsupported operator "
                   "aten::foo); fernas export RUN/model.pt --ten-crop writes it"]
    assert best_effort("x", "y", lambda: None) is True


def test_gpu_check_from_a_later_step_keeps_only_the_earlier_steps_results(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gpu_check", root / "benchmarks" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    names = [gc.step_name(s) for s in gc.STEPS]
    out = tmp_path / "gpu-check.json"
    out.write_text(json.dumps({"steps": {n: {"ok": True} for n in names}}))
    first = names.index("evolve-shared-card")
    assert list(gc.earlier_steps(out, first)) == names[:first]
    assert gc.earlier_steps(tmp_path / "none.json", first) == {}
    out.write_text("{not json")
    with pytest.raises(SystemExit, match="is not an earlier gpu-check result"):
        gc.earlier_steps(out, first)


def test_gpu_check_stops_at_the_first_failure_unless_told_to_keep_going(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gpu_check", root / "benchmarks" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)

    def first_step(work):
        return {"figure": 1}

    def broken_step(work):
        raise RuntimeError("no card")

    def last_step(work):
        return {"figure": 3}

    out = tmp_path / "gpu-check.json"
    for keep_going, ran in ((False, ["first-step", "broken-step"]), (True, ["first-step", "broken-step", "last-step"])):
        result = {"steps": {}}
        assert gc.run_steps([first_step, broken_step, last_step], tmp_path, result, out, keep_going) == ["broken-step"]
        steps = json.loads(out.read_text())["steps"]
        assert list(steps) == ran and steps["broken-step"]["error"] == "RuntimeError: no card"
        assert steps["first-step"]["ok"] and steps["first-step"]["figure"] == 1
    assert steps["last-step"] == {**steps["last-step"], "ok": True, "figure": 3}
    assert capsys.readouterr().err.count("gpu-check: broken-step FAILED: no card") == 2

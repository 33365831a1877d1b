"""The trainer: learns, runs every optimizer x scheduler, stops on divergence, resumes exactly."""

from __future__ import annotations

import re

import pytest
import torch

from fernas import genome as G
from fernas.dataset import Dataset, Split
from fernas.demo_faces import make_demo
from fernas.device import DeviceError, resolve_device
from fernas.errors import RunDirError, UserError
from fernas.model import build_model
from fernas.recipe import OPTIMIZERS, SCHEDULERS, make_optimizer, make_scheduler
from fernas.train import TrainConfig, TrainingDiverged, train_genome
from fernas.train_checkpoint import CHECKPOINT_VERSION, load_checkpoint


def tiny_genome(optimizer="adam", lr=0.002, scheduler="constant", batch_size=32, dropout=0.0):
    conv = lambda w: {"block": "conv", "repeats": 1, "width": w, "kernel": 3, "dropout": dropout, "pool": "max"}
    return {"fernas_genome": 1, "name": "tiny", "stages": [conv(16), conv(32), conv(64)],
            "head": {"reduce": "flatten", "fc": []},
            "train": {"optimizer": optimizer, "lr": lr, "weight_decay": 0.0, "scheduler": scheduler,
                      "batch_size": batch_size}}


def micro_genome(optimizer, scheduler):
    return {"fernas_genome": 1, "name": "micro",
            "stages": [{"block": "conv", "repeats": 1, "width": 16, "kernel": 3, "dropout": 0.0, "pool": "max"}],
            "head": {"reduce": "avg", "fc": []},
            "train": {"optimizer": optimizer, "lr": 0.01, "weight_decay": 0.0001, "scheduler": scheduler,
                      "batch_size": 32}}


@pytest.fixture(scope="module")
def demo():
    return make_demo(840, 210, 70, seed=1)


@pytest.fixture(scope="module")
def micro_data():
    g = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.randint(0, 256, (n, 48, 48), generator=g, dtype=torch.uint8),
                            torch.randint(0, 7, (n,), generator=g))
    return Dataset(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
                   split(48), split(16), split(16))


def test_small_genome_learns_demo_well_above_chance(demo):
    res = train_genome(tiny_genome(), demo, TrainConfig(epochs=3, augment="none", seed=0))
    assert len(res.history) == 3
    assert res.best_val_acc > 0.35, res.history  # chance is 1/7 = 0.14
    assert res.best_val_acc == max(h["val_acc"] for h in res.history)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    # best_state holds the weights of the best epoch, and the returned model carries them
    for k, v in res.model.state_dict().items():
        assert torch.equal(v.cpu(), res.best_state[k])
    assert set(res.history[0]) >= {"phase", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                                   "seconds"}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_scheduler_pair_runs(optimizer, micro_data, tmp_path):
    for scheduler in SCHEDULERS:
        doc = micro_genome(optimizer, scheduler)
        seen = []
        ck = tmp_path / f"{scheduler}.pt"
        res = train_genome(doc, micro_data, TrainConfig(epochs=2, max_steps_per_epoch=2, augment="vgg",
                                                        select="last"), on_epoch=seen.append, checkpoint_path=ck)
        assert load_checkpoint(ck)["epoch"] == 2  # every state in it loads with weights_only=True
        assert [r["epoch"] for r in seen] == [1, 2]
        assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in seen), (optimizer, scheduler)
        torch.manual_seed(0)
        fresh = build_model(doc)
        changed = any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                             res.best_state.values()))
        assert changed, f"{optimizer} x {scheduler}: weights did not move"


def test_schedules_follow_the_papers_settings():
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = make_optimizer(p, {"optimizer": "nesterov", "lr": 0.01})
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] and opt.defaults["weight_decay"] == 1e-4
    sched, per_step = make_scheduler(opt, {"scheduler": "plateau"}, epochs=50, steps_per_epoch=10)
    assert not per_step
    sched.step(0.5)  # best so far
    for _ in range(5):  # five epochs without gain: still patient
        sched.step(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    sched.step(0.5)  # sixth: reduced by 0.75
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0075)
    opt = make_optimizer(p, {"optimizer": "sgd", "lr": 0.01})
    sched, per_step = make_scheduler(opt, {"scheduler": "cosine"}, epochs=3, steps_per_epoch=4)
    for _ in range(12):
        opt.step()
        sched.step()
    assert per_step and opt.param_groups[0]["lr"] < 1e-6


def test_nan_guard_fires_on_absurd_learning_rate(micro_data):
    # lr 1e30: the first step sends weights to ~1e30, the second overflows to inf, then NaN.
    # (A merely large lr such as 1e3 can instead kill every ReLU and leave the loss finite.)
    seen = []
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch \d+ step \d+ \(lr 1e\+30\)"):
        train_genome(tiny_genome(optimizer="sgd", batch_size=32), micro_data, TrainConfig(epochs=5, lr=1e30),
                     on_epoch=seen.append)
    assert len(seen) < 5  # it stopped early instead of training on NaN weights
    assert issubclass(TrainingDiverged, RuntimeError)


class _NanFromCall(torch.nn.Module):
    """A network whose training forward passes give NaN logits from its `bad`-th call on."""

    def __init__(self, bad: int, classes: int):
        super().__init__()
        self.fc, self.calls, self.bad = torch.nn.Linear(40 * 40, classes), 0, bad

    def forward(self, x):
        self.calls += self.training
        out = self.fc(x.flatten(1))
        return out * float("nan") if self.training and self.calls >= self.bad else out


def test_the_first_non_finite_step_is_named_between_checks(micro_data):
    # checks every 4 steps: the error still names the step the loss first went bad, and the
    # epoch stops at the check after it
    model = _NanFromCall(bad=3, classes=micro_data.num_classes)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1 step 3 "):
        train_genome(tiny_genome(optimizer="sgd", batch_size=8), micro_data,
                     TrainConfig(epochs=2, check_every=4, max_steps_per_epoch=10), model=model)
    assert model.calls == 4


@pytest.mark.parametrize("warmup", [0, 3])  # 3: the resumed epoch is inside the augmentation warm-up
def test_resume_gives_the_same_history_as_an_uninterrupted_run(demo, tmp_path, warmup):
    small = Dataset(demo.classes, Split(demo.train.x[:160], demo.train.y[:160]), demo.val, demo.test)
    doc = tiny_genome(optimizer="nesterov", lr=0.01, scheduler="plateau", dropout=0.1)
    # on CPU: cuDNN is not bit-reproducible
    cfg = TrainConfig(epochs=3, augment="vgg", seed=3, device="cpu", augment_warmup=warmup)
    full = train_genome(doc, small, cfg)

    ck = tmp_path / "ck.pt"

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train_genome(doc, small, cfg, checkpoint_path=ck, on_epoch=stop_after_two)
    seen = []
    resumed = train_genome(doc, small, cfg, checkpoint_path=ck, resume=True, on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [3]  # only the missing epoch ran
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert drop(resumed.history) == drop(full.history)
    assert resumed.best_epoch == full.best_epoch
    for k in full.best_state:
        assert torch.equal(full.best_state[k], resumed.best_state[k]), k


@pytest.mark.parametrize("crops", [1, 10])
def test_the_augmentation_warm_up_rises_with_the_epoch_and_then_is_the_preset(crops):
    from types import SimpleNamespace

    from fernas import augment as aug
    from fernas.train import _inputs, augment_ramp

    x, y = torch.randint(0, 256, (6, 48, 48), dtype=torch.uint8), torch.arange(6)
    idx = torch.arange(6)

    def inputs(epoch, warmup, **overrides):  # the trainer's inputs, and the preset's with `overrides`
        cfg = SimpleNamespace(train_crops=crops, augment="vgg", augment_warmup=warmup)
        run = SimpleNamespace(cfg=cfg, train=(x, y, None), gen=torch.Generator().manual_seed(5))
        got = _inputs(run, idx, augment_ramp(cfg, epoch))[0]
        g = torch.Generator().manual_seed(5)
        want = (aug.train_crops_all(x, y, generator=g, **overrides)[0] if crops == 10
                else aug.augment_batch(x, generator=g, **overrides))
        return got, want

    for epoch, fraction in ((0, 0.0), (1, 0.25), (3, 0.75)):
        got, want = inputs(epoch, 4, **aug.warmup_overrides("vgg", fraction))
        assert torch.equal(got, want.contiguous(memory_format=torch.channels_last)), epoch
    for epoch, warmup in ((4, 4), (0, 0)):  # after the warm-up, or without one: the preset itself
        got, want = inputs(epoch, warmup)
        assert torch.equal(got, want.contiguous(memory_format=torch.channels_last)), (epoch, warmup)
    assert not torch.equal(*inputs(0, 4))  # the warm-up's start is not the preset
    with pytest.raises(ValueError, match="augment_warmup must be >= 0"):
        TrainConfig(epochs=1, augment_warmup=-1)


def test_a_stopped_budget_continues_the_curve_of_the_longer_schedule(demo, tmp_path):
    """Promotion: train to epoch 1 of a 3-epoch schedule, continue to epoch 2 from the checkpoint:
    the weights equal an uninterrupted training to epoch 2 of that schedule (per-step cosine)."""
    small = Dataset(demo.classes, Split(demo.train.x[:160], demo.train.y[:160]), demo.val, demo.test)
    doc = tiny_genome(optimizer="nesterov", lr=0.01, scheduler="cosine")
    whole = train_genome(doc, small, TrainConfig(epochs=3, seed=2, stop_after_epoch=2, select="last"))
    ck = tmp_path / "ck.pt"
    first = train_genome(doc, small, TrainConfig(epochs=3, seed=2, stop_after_epoch=1, select="last"), checkpoint_path=ck)
    assert [r["epoch"] for r in first.history] == [1] and first.history[0]["inputs"] == first.inputs > 0
    more = train_genome(doc, small, TrainConfig(epochs=3, seed=2, stop_after_epoch=2, select="last"),
                        checkpoint_path=ck, resume=True)
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(more.history) == drop(whole.history) and len(whole.history) == 2
    for k in whole.best_state:
        assert torch.equal(whole.best_state[k], more.best_state[k]), k
    assert whole.history[1]["lr"] > 0.01 * 0.2  # mid-way down the 3-epoch cosine, not its end


def test_resume_from_missing_or_corrupt_checkpoint_is_a_clear_error(micro_data, tmp_path):
    doc = micro_genome("sgd", "constant")
    with pytest.raises(RunDirError, match="no checkpoint"):
        train_genome(doc, micro_data, TrainConfig(epochs=1), checkpoint_path=tmp_path / "none.pt", resume=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(RunDirError, match="corrupt"):
        train_genome(doc, micro_data, TrainConfig(epochs=1), checkpoint_path=bad, resume=True)


def test_resolve_device_errors_name_the_device_and_commands_name_their_flag():
    import argparse

    from fernas.commands.common import device_from_args

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DeviceError, match=r"^device 'tpu': expected auto, cpu or cuda$"):
        resolve_device("tpu")
    assert issubclass(DeviceError, UserError)
    with pytest.raises(UserError, match=r"^--device 'tpu': expected auto, cpu or cuda$"):
        device_from_args(argparse.Namespace(device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU") as info:
            resolve_device("cuda")
        assert "--" not in str(info.value)
        with pytest.raises(UserError, match=r"^--device cuda: no CUDA GPU .*; use --device cpu or auto$"):
            device_from_args(argparse.Namespace(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_gpu_with_bf16_autocast(demo):
    res = train_genome(tiny_genome(), demo, TrainConfig(epochs=2, device="cuda", augment="vgg", train_crops=10,
                                                        max_steps_per_epoch=5, val_crops=10))
    assert res.device.startswith("cuda") and len(res.history) == 2
    assert all(v.device.type == "cpu" for v in res.best_state.values())


def test_recipe_registries_hold_the_genes_choices():
    assert OPTIMIZERS == G.OPTIMIZERS and SCHEDULERS == G.SCHEDULERS


def test_train_config_defaults_are_what_train_genome_does(micro_data):
    cfg = TrainConfig(epochs=1)
    assert (cfg.seed, cfg.device, cfg.train_crops, cfg.augment, cfg.val_crops, cfg.select, cfg.phase) == \
        (0, "auto", 1, "vgg", 1, "best", "train")
    assert cfg.amp is cfg.eval_batch is cfg.max_steps_per_epoch is cfg.check_every is None
    assert cfg.lr is cfg.scheduler is cfg.optimizer is cfg.batch_size is None
    doc = micro_genome("sgd", "constant")  # batch 32; the split has 48 images
    res = train_genome(doc, micro_data, TrainConfig(epochs=1, device="cpu"))
    assert (res.steps, res.inputs) == (1, 32)  # the genome's batch size, the remainder dropped
    assert res.history[0]["phase"] == "train" and res.history[0]["lr"] == pytest.approx(0.01)
    res = train_genome(doc, micro_data, TrainConfig(epochs=1, device="cpu", batch_size=8, max_steps_per_epoch=0,
                                                     lr=0.5, phase="finetune", train_crops=10))
    assert (res.steps, res.inputs) == (6, 480)  # 0: the whole epoch; ten crops per image
    assert res.history[0]["phase"] == "finetune" and res.history[0]["lr"] == pytest.approx(0.5)
    res = train_genome(doc, micro_data, TrainConfig(epochs=2, device="cpu", batch_size=8, max_steps_per_epoch=2))
    assert res.steps == 4
    with pytest.raises(ValueError, match="train_crops"):
        TrainConfig(epochs=1, train_crops=3)
    with pytest.raises(ValueError, match="select"):
        TrainConfig(epochs=1, select="worst")


def test_checkpoint_of_another_version_is_refused_naming_both_versions(micro_data, tmp_path):
    ck = tmp_path / "checkpoint-train.pt"
    doc = micro_genome("sgd", "constant")
    train_genome(doc, micro_data, TrainConfig(epochs=1), checkpoint_path=ck)
    assert load_checkpoint(ck)["fernas_checkpoint"] == CHECKPOINT_VERSION == 4
    old = torch.load(ck, weights_only=False)
    old["fernas_checkpoint"] = 1
    torch.save(old, ck)
    with pytest.raises(RunDirError, match=rf"^{re.escape(str(ck))}: training checkpoint version 1, this fernas "
                                          "resumes version 4"):
        train_genome(doc, micro_data, TrainConfig(epochs=1), checkpoint_path=ck, resume=True)


class _Payload:
    def __reduce__(self):  # what a malicious checkpoint would carry: a call on load
        return (print, ("pwned",))


def test_a_checkpoint_carrying_code_is_refused(tmp_path, capsys):
    ck = tmp_path / "checkpoint-train.pt"
    torch.save({"fernas_checkpoint": CHECKPOINT_VERSION, "payload": _Payload()}, ck)
    with pytest.raises(RunDirError, match="refused: it holds objects other than tensors and plain values"):
        load_checkpoint(ck)
    assert "pwned" not in capsys.readouterr().out

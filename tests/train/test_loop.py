"""End-to-end training runs of the tiny model on CPU: learning, exact resume, 2-process DDP, CLI.

Validation during training, best-k checkpoints (resumable), the loss reduction and the device-count
warning (issue 15).

Zero-shot training (reference ``LSegmentationModuleZS``) with the `*_zs` recipes on generated
few-shot layouts: the tiny model learns, on the training folds' classes, to segment the named object,
and its zero-shot mIoU on the held-out fold rises (issue 15).

fp16 mixed-precision training: the GradScaler's state is resumed and skipped steps are not counted.

CPU Fabric turns ``precision="16-mixed"`` into bf16 (no scaler), so these runs inject Fabric's fp16
plugin with a CPU GradScaler: the same code path a GPU run takes, scaler included.
"""

from __future__ import annotations

import csv
import json
import logging
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from conftest import interrupt_at_call
from process_group import TwoProcessRun
from torch.utils.data import default_collate

import lseg
from lseg.cli import main
from lseg.eval.evaluate import EvalConfig, evaluate
from lseg.models.text_encoder import CLIPTextEncoder
from lseg.train import TrainConfig, get_recipe, loop, train
from lseg.train.loop import _pixel_cross_entropy, _zero_shot_batch
from lseg.train.toy import make_toy_fewshot


def _logged(run_dir: Path, column: str = "train/loss") -> dict[int, float]:
    """step -> value over every logs/version_*/metrics.csv (later invocations win)."""
    out: dict[int, float] = {}
    for f in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get(column):
                    out[int(row["step"])] = float(row[column])
    return out


def _ckpt(run_dir: Path) -> dict:
    # The training checkpoint must load without unpickling arbitrary objects.
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


@pytest.mark.slow  # 150 training steps
def test_tiny_model_learns_the_toy_dataset(toy_root: Path, tiny_cfg: TrainConfig):
    cfg = tiny_cfg.replace(batch_size=4, max_steps=150, optimizer="adam", base_lr=1e-3, log_every_n_steps=25)
    eval_cfg = EvalConfig(dataset="folder", data_root=str(toy_root), size=None, crop_size=64, num_workers=0, progress=False)
    torch.manual_seed(cfg.seed)  # the run's initial model (train() seeds the same way before building it)
    before = evaluate(lseg.create_model(cfg.model), eval_cfg)["metrics"]
    result = train(cfg)
    assert result.finished and result.step == 150 and result.model_dir is not None
    after = evaluate(lseg.load_model(result.model_dir), eval_cfg)["metrics"]
    losses = _logged(Path(cfg.out_dir))
    assert losses[150] < 0.5 * losses[25]
    # Observed on this CPU: mIoU 26-4 % before, ~87 % after 150 steps (pixAcc ~96.5 %).
    assert after["mIoU"] >= 80.0, (before, after)
    assert after["mIoU"] - before["mIoU"] >= 40.0
    assert after["pixAcc"] >= 90.0


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tiny_cfg: TrainConfig, tmp_path: Path):
    # 8 images, 1 x accumulate 2 -> 4 steps per epoch; the interruption at step 5 is mid-epoch.
    cfg = tiny_cfg.replace(
        batch_size=1, accumulate_grad_batches=2, max_steps=8, checkpoint_every_n_steps=3,
        lr_schedule_interval="epoch",
    )
    full = train(cfg.replace(out_dir=str(tmp_path / "full")), resume="never")
    assert full.finished and full.resumed_from is None
    part = train(cfg.replace(out_dir=str(tmp_path / "split"), stop_after_steps=5), resume="never")
    assert (part.step, part.finished, part.model_dir) == (5, False, None)
    rest = train(cfg.replace(out_dir=str(tmp_path / "split")))  # resume="auto" picks up last.ckpt
    assert rest.resumed_from == tmp_path / "split" / "checkpoints" / "last.ckpt"
    assert rest.step == 8 and rest.finished

    a, b = _ckpt(tmp_path / "full"), _ckpt(tmp_path / "split")
    assert a["step"] == b["step"] == 8 and a["epoch"] == 2
    assert _max_diff(a["model"], b["model"]) <= 1e-6
    mom_a = {str(k): v["momentum_buffer"] for k, v in a["optimizer"]["state"].items()}
    mom_b = {str(k): v["momentum_buffer"] for k, v in b["optimizer"]["state"].items()}
    assert _max_diff(mom_a, mom_b) <= 1e-6
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 2
    losses_a, losses_b = _logged(tmp_path / "full"), _logged(tmp_path / "split")
    assert sorted(losses_a) == list(range(1, 9))
    assert losses_a == losses_b
    lrs = _logged(tmp_path / "full", "lr/encoder")
    assert lrs[1] == lrs[4] > lrs[5] == lrs[8]  # stepped once per epoch, as the reference
    assert isinstance(a["rng"]["torch"], torch.Tensor) and a["config"]["max_steps"] == 8


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(two_processes: TwoProcessRun, tmp_path: Path):
    # `lseg train --config ddp.yaml --devices 2 --batch-size 1` in the two ranks of torchrun
    # (tests/process_group.py, which says why this config); here the same config in one process.
    run = two_processes
    assert run.exit_codes["train"] == [0, 0], run.stderr["train"][-3000:]
    cfg = run.train_config.replace(out_dir=str(tmp_path / "single"))
    train(cfg, resume="never")

    single, ddp = _ckpt(tmp_path / "single"), _ckpt(run.train_out)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    # Parameters and BatchNorm running statistics after 3 SGD steps (momentum, decoder lr 0.1).
    assert _max_diff(single["model"], ddp["model"]) <= 1e-5
    loss_single, loss_ddp = _logged(tmp_path / "single"), _logged(run.train_out)
    assert sorted(loss_single) == sorted(loss_ddp) == [1, 2, 3]
    for step in loss_single:
        assert loss_ddp[step] == pytest.approx(loss_single[step], rel=1e-5)
    for metric in ("val/mIoU", "val/pixAcc"):
        v_single, v_ddp = _logged(tmp_path / "single", metric), _logged(run.train_out, metric)
        assert sorted(v_single) == sorted(v_ddp) == [2]
        assert v_ddp[2] == pytest.approx(v_single[2], abs=0.05)
    assert [b["epoch"] for b in ddp["best"]] == [b["epoch"] for b in single["best"]] == [1]


def test_cli_train_then_eval(toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "toy.yaml"
    config.write_text(
        yaml.safe_dump({
            "recipe": "folder_finetune", "model": "lseg_tiny_test", "data_root": str(toy_root),
            "base_size": 64, "crop_size": 64, "batch_size": 2, "epochs": 1, "accelerator": "cpu",
            "num_workers": 0, "progress_bar": False, "log_every_n_steps": 1,
        }),
        encoding="utf-8",
    )
    out_dir = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out-dir", str(out_dir)]) == 0
    assert "finished at step 4/4" in capsys.readouterr().err
    saved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert saved["model"] == "lseg_tiny_test" and saved["out_dir"] == str(out_dir) and saved["epochs"] == 1
    assert (out_dir / "model" / "model.safetensors").is_file()
    # Running the same command again resumes from last.ckpt: nothing left to do, and it says so.
    assert main(["train", "--config", str(config), "--out-dir", str(out_dir)]) == 0
    err = capsys.readouterr().err
    assert f"the run in {out_dir} is complete (4/4 steps" in err and "--resume never" in err

    report_path = tmp_path / "eval.json"
    rc = main([
        "eval", "-c", str(out_dir / "model"), "--dataset", "folder", "--data-root", str(toy_root),
        "--size", "0", "--crop-size", "64", "--num-workers", "0", "--device", "cpu", "--out", str(report_path), "-q",
    ])
    assert rc == 0
    report = json.loads(report_path.read_text())
    assert report["num_images"] == 8 and report["protocol"] == "semantic"
    assert [c["label"] for c in report["per_class"]] == ["grass", "red square", "blue ball"]
    assert 0.0 <= report["metrics"]["mIoU"] <= 100.0
    assert "mIoU" in capsys.readouterr().out


@pytest.mark.slow
def test_validation_every_epoch_keeps_best_k_and_resumes(toy_val_root: Path, tiny_cfg: TrainConfig, tmp_path: Path):
    # 8 images, batch 2 -> 4 steps per epoch; 4 epochs, validated after each on the 4 val images.
    cfg = tiny_cfg.replace(
        data_root=str(toy_val_root), val_split="val", val_every_n_epochs=1, save_top_k=2, monitor="mIoU",
        max_steps=None, epochs=4, optimizer="adam", base_lr=1e-3,
    )
    full = train(cfg.replace(out_dir=str(tmp_path / "full")), resume="never")
    assert full.finished and full.val_metrics is not None and set(full.val_metrics) == {"pixAcc", "mIoU"}
    files = sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("best-*.ckpt"))
    assert len(files) == 2 and [p.name for p in full.best] != []
    assert sorted(p.name for p in full.best) == files
    ckpt = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    scores = [b["score"] for b in ckpt["best"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 2
    best_state = torch.load(full.best[0], map_location="cpu", weights_only=True)
    assert best_state["step"] == ckpt["best"][0]["step"] and best_state["step"] % 4 == 0

    # Interrupted mid-epoch 3 and resumed: the same validations, the same kept files.
    part = train(cfg.replace(out_dir=str(tmp_path / "split"), stop_after_steps=10), resume="never")
    assert not part.finished and len(part.best) == 2
    rest = train(cfg.replace(out_dir=str(tmp_path / "split")))
    assert rest.resumed_from is not None and rest.finished
    assert [p.name for p in rest.best] == [p.name for p in full.best]
    assert sorted(p.name for p in (tmp_path / "split" / "checkpoints").glob("best-*.ckpt")) == files
    assert rest.val_metrics == full.val_metrics

    # every 2 epochs, top 1: validations after epochs 2 and 4 only
    two = train(cfg.replace(out_dir=str(tmp_path / "two"), val_every_n_epochs=2, save_top_k=1), resume="never")
    (kept,) = two.best
    assert kept.name.startswith(("best-epoch002", "best-epoch004"))


def test_reference_device_count_is_recorded_and_checked(tiny_cfg: TrainConfig, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="lseg.train.loop"):
        train(tiny_cfg.replace(reference_devices=8, max_steps=1, lr_scaling="reference"), resume="never")
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "8 GPUs" in message and "1 process" in message and "global batch is 2 instead of 16" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lseg.train.loop"):
        train(tiny_cfg.replace(reference_devices=1, max_steps=1), resume="never")
    assert "GPUs" not in " ".join(r.getMessage() for r in caplog.records)


class _FakeFabric:
    """Two processes as seen from rank 0: all_reduce(sum) adds the other rank's value."""

    def __init__(self, other: torch.Tensor) -> None:
        self.world_size = 2
        self.other = other

    def all_reduce(self, t: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "sum"
        return t + self.other


def test_loss_reduction_global_vs_reference():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    target[0, :2] = 255  # half the crop is padding
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="sum")
    # the other process has a full crop: 16 labelled pixels; this one 8
    fabric = _FakeFabric(torch.tensor(16.0))
    glob = _pixel_cross_entropy(logits, target, 255, fabric, "global")  # type: ignore[arg-type]
    ref = _pixel_cross_entropy(logits, target, 255, fabric, "reference")  # type: ignore[arg-type]
    torch.testing.assert_close(glob, per_pixel * 2 / 24)  # DDP's mean over 2 ranks -> sum / 24 pixels
    torch.testing.assert_close(ref, per_pixel / 8)  # this crop's own mean (lang-seg)
    one = SimpleNamespace(world_size=1)
    for mode in ("global", "reference"):  # identical on one process
        torch.testing.assert_close(_pixel_cross_entropy(logits, target, 255, one, mode), per_pixel / 8)  # type: ignore[arg-type]


# Tiny-model overrides of the recipes: everything else (SGD, per-GPU LR scaling, poly per epoch over
# the recipe's horizon, supports, 2-way loss, validation, top-3) is the recipe's. base_lr is 8x the
# paper's: 90 steps of a random 1.7 M-parameter model need a larger step than a fine-tuned ResNet.
_CPU = [
    "--model", "lseg_tiny_test", "--pretrained-backbone", "false", "--clip-text-weights", "null",
    "--crop-size", "64", "--batch-size", "4", "--lr", "0.032", "--accelerator", "cpu", "--num-workers", "0",
    "--progress-bar", "false", "--log-every-n-steps", "10", "--checkpoint-every-n-steps", "0",
]
# recipe -> (benchmark, per-class images, extra flags, held-out evaluation)
_CASES = {
    "pascal5i_fold0_zs": ("pascal5i", 8, [], {"num_episodes": None}),
    "coco20i_fold0_zs": ("coco20i", 2, ["--set", "val_dataset_kwargs={num_episodes: 100}"], {"num_episodes": 200}),
    # FSS-1000: 520 trn categories; the recipe's 200 epochs cut to 60 steps of 8 queries + 8 supports.
    "fss1000_vitl16_zs": ("fss1000", 2, ["--max-steps", "60", "--batch-size", "8", "--val-split", "null"], {}),
}


@pytest.fixture(scope="module")
def hsn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hsn")
    return {b: make_toy_fewshot(root / b, b, per_class=n, size=64) for b, n, _, _ in _CASES.values()}


def _held_out(benchmark: str, root: Path, splits: dict, kwargs: dict) -> EvalConfig:
    return EvalConfig(
        protocol="fewshot", dataset=benchmark, data_root=str(root), split="test" if benchmark == "fss1000" else None,
        fewshot_size=64, batch_size=16, num_workers=0, progress=False, dataset_kwargs={**splits, **kwargs},
    )


@pytest.mark.slow  # a recipe's training run each
@pytest.mark.parametrize("recipe", list(_CASES))
def test_zero_shot_recipe_raises_held_out_miou(recipe: str, hsn: dict[str, Path], tmp_path: Path, capsys,
                                               monkeypatch: pytest.MonkeyPatch):
    # A random CLIP text tower barely tells labels apart (cosine 0.7-0.96 between "others" and class
    # names), which made the held-out result a coin toss: one seed in six collapsed to ~1 mIoU, and any
    # change of numerics could flip it. CLIP separates labels; this stand-in gives each one its own
    # fixed direction, so the result measures the recipe.
    monkeypatch.setattr(CLIPTextEncoder, "forward", _label_directions)
    benchmark, _, extra, eval_kwargs = _CASES[recipe]
    root = hsn[benchmark]
    splits = {"splits_dir": str(root / "splits" / "pascal")} if benchmark == "pascal5i" else {}
    ecfg = _held_out(benchmark, root, splits, eval_kwargs)
    torch.manual_seed(get_recipe(recipe).seed)  # the run's initial model (train() seeds the same way)
    before = evaluate(lseg.create_model("lseg_tiny_test"), ecfg)["mean"]["miou"]

    out = tmp_path / "run"
    args = ["train", "--recipe", recipe, "--data-root", str(root), "--out-dir", str(out), *_CPU, *extra]
    if splits:
        args += ["--set", f"dataset_kwargs.splits_dir={splits['splits_dir']}"]
    assert main(args) == 0
    assert "finished" in capsys.readouterr().err
    after = evaluate(lseg.load_model(out / "model"), ecfg)["mean"]["miou"]
    print(f"{recipe}: held-out zero-shot mIoU {before:.1f} -> {after:.1f}")
    # Observed on a 2-core CPU (2026-12-05): PASCAL-5i 15.8 -> 49.0, COCO-20i 19.0 -> 64.5, FSS-1000 20.5 -> 70.6.
    # Over seeds 0-5 of each recipe the result still spreads (PASCAL-5i 36-64, COCO-20i 35-70); one run in
    # 18 (FSS-1000, seed 3) did not learn. The bar leaves room for that spread.
    assert after >= 30.0 and after - before >= 15.0, (before, after)
    if benchmark != "fss1000":  # validated every epoch on the held-out fold; top 3 kept
        best = sorted((out / "checkpoints").glob("best-*.ckpt"))
        assert len(best) == 3
        ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 3 and ckpt["schedule_steps"] == 200 * ckpt["steps_per_epoch"]
        assert [Path(b["path"]).name for b in ckpt["best"]] == [p.name for p in sorted(best, key=lambda p: -float(p.stem.split("mIoU")[1]))]


def _label_directions(self: CLIPTextEncoder, labels: list[str], reference: bool = False) -> torch.Tensor:
    """Each label a fixed random unit vector, seeded by its text."""
    rows = [torch.randn(self.cfg.embed_dim, generator=torch.Generator().manual_seed(zlib.crc32(lb.encode())))
            for lb in labels]
    return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def test_zero_shot_batch_and_per_image_labels():
    """Supports first, then queries (the reference's cat(support, query)); each image scored against its
    own ["others", class] pair; PASCAL boundaries trained as "others" or ignored."""
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test").eval()
    text = torch.nn.functional.normalize(torch.randn(4, 32), dim=1)  # others, classes 5, 6, 7
    row_of = torch.zeros(20, dtype=torch.long)
    row_of[[5, 6, 7]] = torch.tensor([1, 2, 3])
    q, s = torch.zeros(2, 3, 64, 64), torch.ones(2, 1, 3, 64, 64)
    qm = torch.full((2, 64, 64), 255)
    items = [{"image": q[i], "mask": qm[i], "class_id": c, "support_images": [s[i, 0]],
              "support_masks": [torch.ones(64, 64, dtype=torch.long)]} for i, c in enumerate([7, 5])]
    batch = default_collate(items)  # as the training DataLoader batches few-shot items
    images, target, labels = _zero_shot_batch(batch, text, row_of, 255, "others")
    assert torch.equal(images[:2], s[:, 0]) and torch.equal(images[2:], q)
    assert (target[:2] == 1).all() and (target[2:] == 0).all()  # 255 -> others
    assert torch.equal(labels, text[torch.tensor([[0, 3], [0, 1], [0, 3], [0, 1]])])
    assert (_zero_shot_batch(batch, text, row_of, 255, "ignore")[1][2:] == 255).all()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        out = model(x, labels)  # what the loop's net computes: one label pair per image
        for i in range(4):
            torch.testing.assert_close(out[i : i + 1], model(x[i : i + 1], labels[i]), rtol=1e-5, atol=1e-5)


@pytest.fixture
def fp16_fabric(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fabric with fp16 autocast and a GradScaler whose huge initial scale overflows the fp16
    gradients: the first steps are skipped until the scale has backed off (as on a GPU, faster)."""
    from lightning.fabric import Fabric
    from lightning.fabric.plugins.precision import MixedPrecision

    def make(cfg: TrainConfig) -> Fabric:
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40, backoff_factor=2.0**-14, growth_interval=2)
        return Fabric(accelerator="cpu", devices=1, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
                      loggers=[])

    monkeypatch.setattr(loop, "_make_fabric", make)


def _ckpt(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_fp16_resume_restores_the_scaler_and_skipped_steps_do_not_count(
    tiny_cfg: TrainConfig, tmp_path: Path, fp16_fabric: None
) -> None:
    cfg = tiny_cfg.replace(batch_size=1, accumulate_grad_batches=2, max_steps=6, checkpoint_every_n_steps=2,
                           optimizer="sgd", logger="none")
    full = train(cfg.replace(out_dir=str(tmp_path / "full")), resume="never")
    a = _ckpt(tmp_path / "full")
    assert full.finished and a["step"] == 6
    assert a["position"] > a["step"], "the huge initial scale must make the scaler skip steps"
    # The LR schedule counts applied steps only; the data position counts every batch group.
    assert a["scheduler"]["last_epoch"] == 6
    assert a["precision"]["scale"] < 2.0**40

    part = train(cfg.replace(out_dir=str(tmp_path / "split"), stop_after_steps=3), resume="never")
    assert part.step == 3 and not part.finished
    mid = _ckpt(tmp_path / "split")
    assert mid["precision"]["scale"] < 2.0**40  # the scaler state is in the checkpoint
    rest = train(cfg.replace(out_dir=str(tmp_path / "split")))
    assert rest.step == 6 and rest.finished
    b = _ckpt(tmp_path / "split")
    assert (b["position"], b["precision"]) == (a["position"], a["precision"])
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6, msg=k)


def test_stop_after_steps_counts_the_steps_of_each_invocation(tiny_cfg):
    """A job script resubmitted unchanged (``--stop-after-steps 2``) goes on: 2, 4, then finished."""
    cfg = tiny_cfg.replace(stop_after_steps=2, max_steps=5)
    steps = [(r.step, r.finished) for r in (train(cfg) for _ in range(3))]
    assert steps == [(2, False), (4, False), (5, True)]


def test_out_dir_under_home_is_expanded_and_resumes(tiny_cfg, tmp_path, monkeypatch):
    """``out_dir="~/run"``: every file in $HOME/run (no ./~ made), and a rerun resumes from it."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    cfg = tiny_cfg.replace(out_dir="~/run", max_steps=3, stop_after_steps=2)
    first = train(cfg)
    assert first.step == 2 and (home / "run" / "checkpoints" / "last.ckpt").is_file()
    assert list((home / "run" / "logs").glob("version_*/metrics.csv"))
    rest = train(cfg)
    assert rest.resumed_from == home / "run" / "checkpoints" / "last.ckpt"
    assert rest.step == 3 and rest.finished
    assert not (cwd / "~").exists()


def test_resuming_another_models_checkpoint_is_a_checkpoint_error(tiny_cfg, capsys):
    first = train(tiny_cfg.replace(max_steps=1))
    other = tiny_cfg.replace(model="lseg_tiny_test_p32", max_steps=1)
    says = "is a checkpoint of model lseg_tiny_test, not of this run's lseg_tiny_test_p32: give another " \
           "--out-dir, or --resume never"
    with pytest.raises(lseg.errors.CheckpointError, match=says) as error:
        train(other)  # the same out_dir: resume="auto" finds the other model's last.ckpt
    assert "\n" not in str(error.value)
    other_dir = str(Path(tiny_cfg.out_dir).parent / "other")
    code = main(["train", "--model", "lseg_tiny_test_p32", "--dataset", "folder", "--data-root",
                 str(tiny_cfg.data_root), "--split", "null", "--base-size", "64", "--crop-size", "64",
                 "--accelerator", "cpu", "--num-workers", "0", "--progress-bar", "false", "--max-steps", "1",
                 "--out-dir", other_dir, "--resume", str(first.checkpoint)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "is a checkpoint of model lseg_tiny_test," in err
    assert err.count("\n") == 1  # the error alone: no warning about the changed model before it


def test_resume_with_other_optimisation_settings_is_refused(tiny_cfg, caplog, capsys):
    """The restored optimizer and LR schedule would override a changed LR or run length (before: a
    longer run logged lr 0 and trained nothing; a new LR was warned about, then ignored)."""
    cfg = tiny_cfg.replace(base_lr=0.001, max_steps=4, stop_after_steps=2)
    assert train(cfg).step == 2
    config_yaml = (Path(cfg.out_dir) / "config.yaml").read_text()
    last = Path(cfg.out_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(lseg.errors.ConfigError) as error:
        train(cfg.replace(base_lr=0.1, max_steps=6))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{last} was trained with other optimisation settings")
    assert "(max_steps: 4 -> 6; base_lr: 0.001 -> 0.1)" in message
    assert "--resume never" in message and f"--checkpoint {Path(cfg.out_dir) / 'model'}" in message
    # the refused config is not recorded
    assert (Path(cfg.out_dir) / "config.yaml").read_text() == config_yaml
    # another batch size with an epoch-based run: the run length and the scaled LR change with it
    epochs = tiny_cfg.replace(out_dir=str(Path(cfg.out_dir).parent / "epochs"), max_steps=None, epochs=2,
                              lr_scaling="global", stop_after_steps=1)
    train(epochs)
    with pytest.raises(lseg.errors.ConfigError, match=r"\(total steps: 8 -> 4; schedule steps: 8 -> 4; "
                       r"learning rates: .* -> .*; batch_size: 2 -> 4\)"):
        train(epochs.replace(batch_size=4))
    # settings the checkpoint does not override may change, with a warning; the run goes on
    with caplog.at_level(logging.WARNING, logger="lseg.train.loop"):
        assert train(cfg.replace(seed=1)).step == 4
    assert "with changed settings (seed: 0 -> 1)" in caplog.text


def test_resume_after_labels_txt_changed_warns(tiny_cfg, tmp_path, caplog):
    """An edited labels.txt between an interrupted run and its resumption changes what the loss trains
    (before: resumed silently, e.g. two classes swapped)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_cfg.data_root, root)
    cfg = tiny_cfg.replace(data_root=str(root), max_steps=4, stop_after_steps=2)
    assert train(cfg).step == 2
    (root / "labels.txt").write_text("red square\ngrass\nblue ball\n")
    with caplog.at_level(logging.WARNING, logger="lseg.train.loop"):
        assert train(cfg).step == 4
    assert "with changed settings (labels: class 0 'grass' -> 'red square')" in caplog.text


def test_time_per_step_divides_by_the_steps_since_the_last_log(tiny_cfg, monkeypatch):
    """A clock that advances 1 s per reading: steps 1-3 take 1 s, the final step 4 alone 1 s (before:
    every interval was divided by log_every_n_steps, so the last (and a resumed run's first) was wrong)."""
    clock = iter(range(100))
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    run = train(tiny_cfg.replace(max_steps=4, log_every_n_steps=3))
    assert _logged(run.out_dir, "time/step_s") == pytest.approx({3: 1 / 3, 4: 1.0})


def test_a_bad_image_read_by_a_worker_is_one_line(tiny_cfg, tmp_path, capsys):
    """With DataLoader workers the error is the same one line as without (before: torch's "Caught
    DatasetError in DataLoader worker process 0." and the worker's whole traceback)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_cfg.data_root, root)
    bad = min((root / "images").iterdir())
    bad.write_bytes(b"not an image")
    messages = []
    for workers in (0, 1):
        with pytest.raises(lseg.errors.LSegError) as error:
            train(tiny_cfg.replace(data_root=str(root), num_workers=workers, batch_size=8, max_steps=1,
                                   out_dir=str(tmp_path / f"run{workers}")))
        messages.append((type(error.value), str(error.value)))
    assert messages[1] == messages[0] and bad.name in messages[0][1] and "\n" not in messages[0][1]


def test_resume_never_removes_the_previous_runs_checkpoints_and_model(toy_val_root, tiny_cfg):
    cfg = tiny_cfg.replace(data_root=str(toy_val_root), val_split="val", save_top_k=2, max_steps=8)
    run = Path(cfg.out_dir)
    first = train(cfg)
    assert len(first.best) == 2 and (run / "model" / "model.safetensors").is_file()
    (run / "checkpoints" / "notes.txt").write_text("mine")  # not lseg's: kept
    again = train(cfg.replace(stop_after_steps=2), resume="never")  # stops before any validation
    assert again.step == 2 and again.resumed_from is None and again.best == []
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "notes.txt"]
    assert not (run / "model").exists() and _ckpt(run)["step"] == 2


def test_ctrl_c_saves_the_last_whole_step_and_a_rerun_continues_exactly(tiny_cfg, tmp_path, monkeypatch):
    """A KeyboardInterrupt in the middle of step 6 (its second batch) keeps steps 1-5: last.ckpt at step 5
    (BatchNorm statistics as they were after step 5) and the logged metrics; the rerun equals a run never
    interrupted (before: nothing saved since the last periodic checkpoint, metrics.csv never written)."""
    cfg = tiny_cfg.replace(batch_size=1, accumulate_grad_batches=2, max_steps=8)
    full = train(cfg.replace(out_dir=str(tmp_path / "full")))
    split = cfg.replace(out_dir=str(tmp_path / "split"))
    # 2 batches per step: the 12th loss is step 6's, after its first batch's forward
    interrupt_at_call(monkeypatch, loop, "_pixel_cross_entropy", 12)
    with pytest.raises(KeyboardInterrupt):
        train(split)
    assert _ckpt(tmp_path / "split")["step"] == 5
    assert sorted(_logged(tmp_path / "split")) == [1, 2, 3, 4, 5]
    monkeypatch.undo()
    rest = train(split)
    assert rest.resumed_from is not None and rest.step == 8 and rest.finished and full.finished
    a, b = _ckpt(tmp_path / "full"), _ckpt(tmp_path / "split")
    assert _max_diff(a["model"], b["model"]) <= 1e-6
    assert _logged(tmp_path / "full") == _logged(tmp_path / "split")


def test_a_data_error_saves_the_last_whole_step_like_ctrl_c(tiny_cfg, tmp_path, monkeypatch):
    """A bad file met in step 4 (a mask edited while training) keeps steps 1-3 in last.ckpt; once fixed,
    the rerun equals an uninterrupted run (before: every step since the last periodic checkpoint lost)."""
    cfg = tiny_cfg.replace(max_steps=6)
    full = train(cfg.replace(out_dir=str(tmp_path / "full")))
    real, calls = loop._next_batch, []

    def bad_file(batches):
        calls.append(1)
        if len(calls) == 4:
            raise lseg.errors.DatasetError("mask x.png holds value(s) [7]")
        return real(batches)

    monkeypatch.setattr(loop, "_next_batch", bad_file)
    split = cfg.replace(out_dir=str(tmp_path / "split"))
    with pytest.raises(lseg.errors.DatasetError, match=r"^mask x.png holds value\(s\) \[7\]$"):
        train(split)
    assert _ckpt(tmp_path / "split")["step"] == 3
    monkeypatch.undo()
    rest = train(split)
    assert rest.resumed_from is not None and rest.finished and full.finished
    assert _max_diff(_ckpt(tmp_path / "full")["model"], _ckpt(tmp_path / "split")["model"]) <= 1e-6


def test_config_yaml_replayed_from_another_directory_resumes_the_same_run(tiny_cfg, tmp_path, monkeypatch,
                                                                          caplog):
    """The paths a run reads (data, the checkpoint it fine-tunes, reader keywords such as ``splits_dir``)
    are recorded absolute: ``lseg train --config OUT/config.yaml`` from elsewhere resumes it, silently
    (before: ``error: checkpoint not found: init`` for a relative ``--checkpoint``)."""
    import shutil

    from lseg.pretrained.checkpoints import save_pretrained
    from lseg.train import load_config

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    shutil.copytree(tiny_cfg.data_root, work / "data")
    (work / "data" / "splits").mkdir()
    (work / "data" / "splits" / "train.txt").write_text("toy_0000\ntoy_0001\n")
    save_pretrained(lseg.create_model("lseg_tiny_test"), work / "init")
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    cfg = tiny_cfg.replace(data_root="data", init_checkpoint="init", out_dir="run", split="train",
                           max_steps=2, stop_after_steps=1)
    assert train(cfg).step == 1
    saved = yaml.safe_load((work / "run" / "config.yaml").read_text())
    assert saved["init_checkpoint"] == str(work / "init") and saved["data_root"] == str(work / "data")
    monkeypatch.chdir(elsewhere)
    with caplog.at_level(logging.WARNING, logger="lseg.train.loop"):
        rest = train(load_config(work / "run" / "config.yaml"))
    assert rest.resumed_from is not None and rest.finished and "changed settings" not in caplog.text
    assert not (elsewhere / "run").exists()


def _scripted_validation(monkeypatch, scores: dict[int, float]) -> list[int]:
    """Replace validation by ``{"pixAcc", "mIoU"}`` of ``scores[epoch]`` (mIoU = half of it); returns the
    list of epochs validated so far."""
    seen: list[int] = []

    def validate(model, dataset, cfg, fewshot):
        seen.append(len(seen) + 1)
        return {"pixAcc": scores[len(seen)], "mIoU": scores[len(seen)] / 2}

    monkeypatch.setattr(loop, "_validate", validate)
    return seen


def test_resuming_another_runs_checkpoint_in_a_new_out_dir_leaves_its_best_files(toy_val_root, tiny_cfg, tmp_path,
                                                                                   monkeypatch):
    """The ranking is this run folder's: another run's best-*.ckpt are neither deleted nor kept on the
    list (before: a better score in the new run deleted the old run's file)."""
    _scripted_validation(monkeypatch, {1: 10.0, 2: 20.0, 3: 30.0})
    cfg = tiny_cfg.replace(data_root=str(toy_val_root), val_split="val", save_top_k=1, max_steps=None, epochs=3)
    first = train(cfg.replace(out_dir=str(tmp_path / "a"), stop_after_steps=8))
    (old,) = first.best
    assert old.name == "best-epoch002-pixAcc20.00.ckpt"
    rest = train(cfg.replace(out_dir=str(tmp_path / "b")), resume=first.checkpoint)
    assert old.is_file() and rest.best == [tmp_path / "b" / "checkpoints" / "best-epoch003-pixAcc30.00.ckpt"]
    assert [Path(b["path"]) for b in _ckpt(tmp_path / "b")["best"]] == rest.best


def test_resuming_with_another_monitor_starts_a_new_ranking(toy_val_root, tiny_cfg, monkeypatch, caplog):
    """pixAcc then mIoU: the mIoU states are ranked among themselves, the pixAcc files stay (before: mIoU
    35 was compared with pixAcc 50 and 60, so no mIoU state was ever kept)."""
    _scripted_validation(monkeypatch, {1: 50.0, 2: 60.0, 3: 70.0})
    cfg = tiny_cfg.replace(data_root=str(toy_val_root), val_split="val", save_top_k=2, max_steps=None, epochs=3)
    first = train(cfg.replace(stop_after_steps=8))
    assert [p.name for p in first.best] == ["best-epoch002-pixAcc60.00.ckpt", "best-epoch001-pixAcc50.00.ckpt"]
    with caplog.at_level(logging.WARNING, logger="lseg.train.state"):
        rest = train(cfg.replace(monitor="mIoU"))
    assert [p.name for p in rest.best] == ["best-epoch003-mIoU35.00.ckpt"]
    assert all(p.is_file() for p in first.best) and "ranked by pixAcc" in caplog.text


def test_ctrl_c_during_validation_validates_that_epoch_on_resume(toy_val_root, tiny_cfg, monkeypatch):
    """Interrupted while validating epoch 2, the rerun validates epoch 2 first: the same validations and
    kept files as a run never interrupted (before: epoch 2 was never validated nor ranked)."""
    cfg = tiny_cfg.replace(data_root=str(toy_val_root), val_split="val", save_top_k=3, max_steps=None, epochs=3)
    seen = _scripted_validation(monkeypatch, {1: 10.0, 2: 20.0, 3: 30.0})
    full = train(cfg.replace(out_dir=str(Path(cfg.out_dir) / "full")))
    seen.clear()
    validate = loop._validate
    interrupt_at_call(monkeypatch, loop, "_validate", 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert _ckpt(Path(cfg.out_dir))["step"] == 8
    monkeypatch.setattr(loop, "_validate", validate)
    rest = train(cfg)
    assert [p.name for p in rest.best] == [p.name for p in full.best] and len(rest.best) == 3
    assert sorted(_logged(Path(cfg.out_dir), "val/pixAcc").items()) == [(4, 10.0), (8, 20.0), (12, 30.0)]
    assert "val_pending" not in _ckpt(Path(cfg.out_dir)) or not _ckpt(Path(cfg.out_dir))["val_pending"]
    assert not any(torch.load(p, weights_only=True)["val_pending"] for p in rest.best)  # --resume takes them

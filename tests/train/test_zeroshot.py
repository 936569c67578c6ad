"""Zero-shot training (reference ``LSegmentationModuleZS``) with the `*_zs` recipes on generated
few-shot layouts: the tiny model learns, on the training folds' classes, to segment the named object,
and its zero-shot mIoU on the held-out fold rises (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lseg
from lseg.cli import main
from lseg.eval.evaluate import EvalConfig, evaluate
from lseg.train import get_recipe
from lseg.train.loop import PerImageLabels, _zero_shot_batch
from lseg.train.toy import make_toy_fewshot

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


@pytest.mark.parametrize("recipe", list(_CASES))
def test_zero_shot_recipe_raises_held_out_miou(recipe: str, hsn: dict[str, Path], tmp_path: Path, capsys):
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
    # Observed on a 2-core CPU: PASCAL-5i 19.5 -> 80.9, COCO-20i 17.8 -> 74.1, FSS-1000 18.5 -> 54.3.
    assert after >= 45.0 and after - before >= 25.0, (before, after)
    if benchmark != "fss1000":  # validated every epoch on the held-out fold; top 3 kept
        best = sorted((out / "checkpoints").glob("best-*.ckpt"))
        assert len(best) == 3
        ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 3 and ckpt["schedule_steps"] == 200 * ckpt["steps_per_epoch"]
        assert [Path(b["path"]).name for b in ckpt["best"]] == [p.name for p in sorted(best, key=lambda p: -float(p.stem.split("mIoU")[1]))]


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
    batch = {"image": q, "mask": qm, "class_id": torch.tensor([7, 5]), "support_images": s,
             "support_masks": torch.ones(2, 1, 64, 64, dtype=torch.long)}
    images, target, labels = _zero_shot_batch(batch, text, row_of, 255, "others")
    assert torch.equal(images[:2], s[:, 0]) and torch.equal(images[2:], q)
    assert (target[:2] == 1).all() and (target[2:] == 0).all()  # 255 -> others
    assert torch.equal(labels, text[torch.tensor([[0, 3], [0, 1], [0, 3], [0, 1]])])
    assert (_zero_shot_batch(batch, text, row_of, 255, "ignore")[1][2:] == 255).all()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        out = PerImageLabels(model)(x, labels)
        for i in range(4):
            torch.testing.assert_close(out[i : i + 1], model(x[i : i + 1], labels[i]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(PerImageLabels(model)(x, text), model(x, text))

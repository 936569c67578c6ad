"""Dataset evaluation: exact metrics with a model whose predictions we control, few-shot protocol,
multi-scale wiring, bad files, open-vocabulary labels, the CLI and 2-process evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from process_group import TwoProcessRun

import lseg
from lseg.cli import main
from lseg.eval.evaluate import EvalConfig, encode_labels, evaluate, evaluate_segmentation
from lseg.inference.predictor import MultiScaleConfig, multiscale_logits
from lseg.train.toy import make_toy_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids OpenMP spin-waiting on a shared 2-core machine (~5x faster there)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ColourOracle(torch.nn.Module):
    """Stands in for LSeg: class k wherever a pixel's red value is nearest ``step * k``.

    For the few-shot path, "foreground" wherever red > 127. The text embeddings are one-hot rows, so
    the evaluator's text handling is exercised but does not influence the prediction.
    """

    def __init__(self, step: int = 40) -> None:
        super().__init__()
        self.step = step
        self.register_buffer("anchor", torch.zeros(1))
        # the normalisation of normalize() below (the evaluator pads with its value of black)
        self.register_buffer("pixel_mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.full((1, 3, 1, 1), 1 / 255))

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    precision = "fp32"

    def set_precision(self, precision: str) -> ColourOracle:
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255.0

    def encode_text(self, labels: list[str]) -> torch.Tensor:
        return torch.eye(len(labels), max(len(labels), 2))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        red = x[:, :1] * 255.0
        centres = self.step * torch.arange(text.shape[0], dtype=torch.float32).view(1, -1, 1, 1)
        return -((red - centres) ** 2)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def score(self, pixels: torch.Tensor, text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        fg = pixels[:, :1] - 0.5
        return torch.cat([-fg, fg], dim=1)[..., : size[0], : size[1]]


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _rgb_from_red(red: np.ndarray) -> np.ndarray:
    return np.stack([red, np.full_like(red, 90), np.full_like(red, 30)], -1).astype(np.uint8)


def _expected_semantic(preds: list[np.ndarray], masks: list[np.ndarray], k: int) -> dict[str, float]:
    """The metric definitions, written out with NumPy (independent of lseg.eval.metrics)."""
    cm = np.zeros((k, k), np.int64)
    for p, m in zip(preds, masks):
        keep = m != 255
        np.add.at(cm, (m[keep], p[keep]), 1)
    inter = np.diag(cm).astype(float)
    gt, pr = cm.sum(1), cm.sum(0)
    union = gt + pr - inter
    iou = np.divide(inter, union, out=np.zeros(k), where=union > 0)
    return {
        "pixAcc": 100 * inter.sum() / cm.sum(),
        "mIoU": 100 * iou.mean(),  # reference: absent classes count 0
        "mIoU_excl_absent": 100 * iou[union > 0].mean(),
        "mIoU_gt_present": 100 * iou[gt > 0].mean(),
    }


@pytest.fixture
def folder_with_known_errors(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """5 classes: 0-2 in the ground truth, 3 only predicted (false positives), 4 absent everywhere."""
    root = tmp_path / "known"
    labels = ["sky", "tree", "road", "car", "boat"]
    (root).mkdir()
    (root / "labels.txt").write_text("\n".join(labels) + "\n")
    rng = np.random.default_rng(0)
    preds, masks = [], []
    for i, (h, w) in enumerate([(24, 20), (16, 28)]):
        mask = rng.integers(0, 3, (h, w)).astype(np.uint8)
        mask[:2] = 255  # ignored rows
        pred = mask.copy()
        pred[mask == 255] = rng.integers(0, 5, int((mask == 255).sum()))  # anything, ignored
        flip = rng.random((h, w)) < 0.25
        pred[flip] = rng.integers(0, 4, int(flip.sum()))  # errors, including class 3 (never in gt)
        _write_png(root / "images" / f"im{i}.png", _rgb_from_red(40 * pred))
        _write_png(root / "masks" / f"im{i}.png", mask)
        preds.append(pred.astype(np.int64))
        masks.append(mask.astype(np.int64))
    return root, preds, masks


def test_semantic_metrics_match_their_definitions(folder_with_known_errors):
    root, preds, masks = folder_with_known_errors
    cfg = EvalConfig(dataset="folder", data_root=str(root), size=None, crop_size=32, num_workers=0, progress=False)
    report = evaluate(ColourOracle(), cfg)
    expected = _expected_semantic(preds, masks, 5)
    assert report["num_images"] == 2 and report["num_failed"] == 0
    for key, value in expected.items():
        assert report["metrics"][key] == pytest.approx(value, abs=1e-3), key
    assert report["metrics"]["mIoU"] < report["metrics"]["mIoU_excl_absent"] < report["metrics"]["mIoU_gt_present"]
    per_class = {c["label"]: c for c in report["per_class"]}
    assert per_class["boat"]["iou"] is None and per_class["car"]["iou"] == 0.0 and per_class["car"]["gt_pixels"] == 0
    json.dumps(report)  # the report is JSON-serialisable
    for image in (root / "images").iterdir():  # every image unreadable: no figure at all, not mIoU 0
        image.write_bytes(b"broken")
    empty = evaluate(ColourOracle(), cfg)
    assert empty["num_images"] == 0 and empty["num_failed"] == 2
    assert set(empty["metrics"].values()) == {None}


def test_bad_image_is_reported_and_skipped(folder_with_known_errors):
    root, preds, masks = folder_with_known_errors
    (root / "images" / "broken.png").write_bytes(b"definitely not a png")
    _write_png(root / "masks" / "broken.png", np.zeros((8, 8), np.uint8))
    cfg = EvalConfig(dataset="folder", data_root=str(root), size=None, crop_size=32, num_workers=0, progress=False)
    report = evaluate(ColourOracle(), cfg)
    assert report["num_images"] == 2 and report["num_failed"] == 1
    assert report["failed"][0]["path"].endswith("broken.png") and report["failed"][0]["error"]
    assert report["metrics"]["mIoU"] == pytest.approx(_expected_semantic(preds, masks, 5)["mIoU"], abs=1e-3)


def test_open_vocab_voc20_ignores_background_and_uses_readable_names(tmp_path: Path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    mask = np.zeros((12, 12), np.uint8)
    mask[3:9, 3:9] = 11  # diningtable (VOC index 11 -> VOC-20 class 10)
    mask[0, :] = 255
    red = np.where(mask == 11, 100, 0).astype(np.uint8)  # background predicted as class 0: ignored anyway
    _write_png(voc / "JPEGImages" / "a.jpg", _rgb_from_red(red))  # PNG bytes under .jpg: lossless
    _write_png(voc / "SegmentationClass" / "a.png", mask)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    cfg = EvalConfig(protocol="open-vocab", dataset="voc20", data_root=str(tmp_path), size=None, crop_size=32,
                     num_workers=0, progress=False)
    report = evaluate(ColourOracle(step=10), cfg)
    labels = [c["label"] for c in report["per_class"]]
    assert len(labels) == 20 and labels[10] == "dining table" and "background" not in labels
    assert report["metrics"]["pixAcc"] == 100.0 and report["metrics"]["mIoU_gt_present"] == 100.0
    assert report["metrics"]["mIoU"] == pytest.approx(5.0)  # 1 of 20 classes present, reference mean


def test_fewshot_pascal5i_metrics_match_hsnet_definitions(tmp_path: Path):
    voc = tmp_path / "VOC2012"
    lines = []
    inter = {c: np.zeros(2) for c in range(5)}
    union = {c: np.zeros(2) for c in range(5)}
    for i, cls in enumerate([0, 0, 2, 4]):  # fold 0 classes 0..4; classes 1, 3 get no episode
        mask = np.zeros((20, 20), np.uint8)
        mask[5:15, 4:14] = cls + 1
        mask[5, :] = 255  # boundary, ignored
        mask[0:3, 0:3] = 7  # another class: background for this episode
        fg_pred = np.zeros((20, 20), bool)
        fg_pred[6 + i : 16, 4:14 - i] = True
        _write_png(voc / "JPEGImages" / f"im{i}.jpg", _rgb_from_red(np.where(fg_pred, 255, 0).astype(np.uint8)))
        _write_png(voc / "SegmentationClassAug" / f"im{i}.png", mask)
        lines.append(f"im{i}__{cls + 1:02d}")
        valid = mask != 255
        gt = mask == cls + 1
        for k, (p, t) in enumerate([(~fg_pred, ~gt), (fg_pred, gt)]):
            inter[cls][k] += (p & t & valid).sum()
            union[cls][k] += ((p | t) & valid).sum()
    splits = tmp_path / "splits" / "val"
    splits.mkdir(parents=True)
    (splits / "fold0.txt").write_text("\n".join(lines) + "\n")
    cfg = EvalConfig(
        protocol="fewshot", dataset="pascal5i", data_root=str(tmp_path), folds=(0,), fewshot_size=20,
        dataset_kwargs={"splits_dir": str(tmp_path / "splits"), "num_episodes": None}, batch_size=3,
        num_workers=0, progress=False,
    )
    report = evaluate(ColourOracle(), cfg)
    fold = report["folds"]["0"]
    fg = [inter[c][1] / max(union[c][1], 1) for c in range(5)]
    fb = [sum(inter[c][k] for c in range(5)) / sum(union[c][k] for c in range(5)) for k in (0, 1)]
    assert fold["num_episodes"] == 4
    assert fold["miou"] == pytest.approx(100 * np.mean(fg), abs=1e-3)
    assert fold["fb_iou"] == pytest.approx(100 * np.mean(fb), abs=1e-3)
    assert report["mean"] == {"miou": fold["miou"], "fb_iou": fold["fb_iou"]}
    assert [c["label"] for c in fold["per_class"]] == ["aeroplane", "bicycle", "bird", "boat", "bottle"]


def test_fewshot_fold_without_episodes_has_no_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Every episode unreadable: mIoU / FB-IoU / per-class are null (n/a), as for the semantic protocol, not a
    0.00 mIoU and a NaN FB-IoU that made the --out file invalid JSON."""
    voc = tmp_path / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    _write_png(voc / "SegmentationClassAug" / "a.png", np.ones((8, 8), np.uint8))
    (tmp_path / "splits" / "val").mkdir(parents=True)
    for fold in (0, 1):
        (tmp_path / "splits" / "val" / f"fold{fold}.txt").write_text(f"a__{5 * fold + 1:02d}\n")
    out = tmp_path / "r.json"
    code = main(["eval", "--random-weights", "lseg_tiny_test", "-q", "--dataset", "pascal5i", "--data-root",
                 str(tmp_path), "--dataset-kwargs", f"{{splits_dir: {tmp_path / 'splits'}}}", "--fold", "0,1",
                 "--num-episodes", "2", "--fewshot-size", "32", "--num-workers", "0", "--per-class", "-o", str(out)])
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert code == 1 and report["mean"] == {"miou": None, "fb_iou": None}
    fold = report["folds"]["0"]
    assert (fold["miou"], fold["fb_iou"], fold["num_episodes"], fold["num_failed"]) == (None, None, 0, 2)
    assert {c["iou"] for c in fold["per_class"]} == {None}
    printed = capsys.readouterr().out
    assert "     0      n/a      n/a         0" in printed and "  mean      n/a      n/a" in printed


@pytest.mark.parametrize("model_name", ["lseg_tiny_test", "lseg_tiny_test_rn"])  # LSegNetZS, LSegRNNetZS layouts
def test_fewshot_fss1000_cli_with_a_real_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], model_name: str):
    from lseg.data.label_sets import fss_split_categories

    root = tmp_path / "FSS-1000"
    rng = np.random.default_rng(0)
    for cat in fss_split_categories("test"):  # the reader wants every test category folder
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        _write_png(root / cat / "1.jpg", img)
        _write_png(root / cat / "1.png", np.where(rng.random((16, 16)) < 0.4, 255, 0).astype(np.uint8))
    torch.manual_seed(0)
    model_dir = lseg.save_pretrained(lseg.create_model(model_name), tmp_path / "tiny")
    out = tmp_path / "fss.json"
    rc = main([
        "eval", "-c", str(model_dir), "--protocol", "fewshot", "--dataset", "fss1000", "--data-root", str(tmp_path),
        "--fewshot-size", "32", "--batch-size", "16", "--num-workers", "0", "--device", "cpu", "--out", str(out), "-q",
    ])
    assert rc == 0
    report = json.loads(out.read_text())
    fold = report["folds"]["0"]
    assert fold["num_episodes"] == 240 and len(fold["per_class"]) == 240
    assert fold["per_class"][0]["class_id"] == 760  # test categories follow trn (520) + val (240)
    assert 0.0 <= fold["miou"] <= 100.0 and 0.0 < fold["fb_iou"] <= 100.0
    assert "FB-IoU" in capsys.readouterr().out


def test_fewshot_fss1000_leaves_num_episodes_out(tmp_path: Path):
    """--num-episodes does not apply to FSS-1000 (one episode per test image; the reader takes no such
    keyword): it is left out, as --fold is, instead of a TypeError."""
    from lseg.data.label_sets import fss_split_categories

    root = tmp_path / "FSS-1000"
    for cat in fss_split_categories("test"):
        _write_png(root / cat / "1.jpg", np.zeros((8, 8, 3), np.uint8))
        _write_png(root / cat / "1.png", np.zeros((8, 8), np.uint8))
    cfg = EvalConfig(protocol="fewshot", dataset="fss1000", data_root=str(tmp_path), fewshot_size=8, num_episodes=5,
                     max_samples=2, num_workers=0, progress=False)
    assert evaluate(ColourOracle(), cfg)["folds"]["0"]["num_episodes"] == 2


def test_multiscale_evaluation_sums_the_reference_evaluator(tmp_path: Path):
    root = make_toy_dataset(tmp_path / "toy", num_images=1, size=(40, 56), seed=3)
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test").eval()
    cfg = EvalConfig(dataset="folder", data_root=str(root), multiscale=True, scales=(0.5, 1.0, 1.5), base_size=48,
                     crop_size=32, num_workers=0, progress=False)
    from lseg.data.registry import build_dataset
    from lseg.eval.metrics import SegmentationMeter

    ds = build_dataset("folder", root, None)
    report = evaluate_segmentation(model, ds, ds.labels, cfg)
    meter = SegmentationMeter(3)
    text = encode_labels(model, ds.labels)
    with torch.inference_mode():
        for i in range(len(ds)):
            s = ds[i]
            logits = multiscale_logits(model, model.normalize(s["image"][None]), text,
                                       MultiScaleConfig(scales=(0.5, 1.0, 1.5), base_size=48, crop_size=32, flip=True))
            meter.update(logits.argmax(1), s["mask"][None])
    assert report["metrics"]["pixAcc"] == pytest.approx(100 * meter.compute()["pixAcc"], abs=1e-3)
    assert report["metrics"]["mIoU"] == pytest.approx(100 * meter.compute()["mIoU"], abs=1e-3)
    assert cfg.use_flip  # multi-scale evaluation flips by default, as the reference


def test_prompt_templates_are_averaged():
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test").eval()
    got = encode_labels(model, ["dog", "cat"], ["a {}.", "the {}."])
    with torch.no_grad():
        mean = (model.encode_text(["a dog.", "a cat."]) + model.encode_text(["the dog.", "the cat."])) / 2
    torch.testing.assert_close(got, mean / mean.norm(dim=-1, keepdim=True))
    assert encode_labels(model, ["screen", "screen"]).shape == (2, 32)  # duplicates allowed (reference ADE list)


@pytest.mark.slow
def test_two_process_evaluation_equals_single_process(two_processes: TwoProcessRun):
    # `lseg eval --devices 2` in the two ranks of torchrun (tests/process_group.py); 5 images + 1 broken
    run = two_processes
    # rank 0 (the process a user waits on) exits 1: one unreadable image was skipped
    assert run.exit_codes["eval"][0] == 1, run.stderr["eval"][-3000:]
    assert "toy_9999.png" in run.stderr["eval"]
    ddp = json.loads(run.eval_report.read_text())
    single = evaluate(lseg.load_model(run.eval_model), EvalConfig(
        dataset="folder", data_root=str(run.eval_data), size=48, crop_size=32, num_workers=0, progress=False,
    ))
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["num_images"] == single["num_images"] == 5
    assert ddp["num_failed"] == single["num_failed"] == 1
    assert ddp["metrics"] == single["metrics"]
    assert ddp["per_class"] == single["per_class"]


def test_cli_random_weights_and_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = make_toy_dataset(tmp_path / "toy", num_images=3, size=32, seed=5)
    out = tmp_path / "r.json"
    assert main([
        "eval", "--random-weights", "lseg_tiny_test", "--dataset", "folder", "--data-root", str(root), "--size", "32",
        "--crop-size", "32", "--max-samples", "2", "--num-workers", "0", "--device", "cpu", "--out", str(out), "-q",
    ]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "random:lseg_tiny_test" and report["num_images"] == 2
    capsys.readouterr()
    assert main(["eval", "--random-weights", "lseg_tiny_test", "--dataset", "ade999", "--data-root", str(root)]) == 2
    assert "unknown dataset 'ade999'" in capsys.readouterr().err
    args = ["eval", "--random-weights", "lseg_tiny_test", "--dataset", "folder", "--data-root", str(root)]
    assert main([*args, "--protocol", "fewshot"]) == 2
    assert "error: --dataset 'folder' goes with --protocol semantic or open-vocab, not 'fewshot'" in capsys.readouterr().err
    assert main(["eval", "--random-weights", "lseg_tiny_test", "--dataset", "ade847", "--data-root", str(root)]) == 2
    assert "ADE-847 images" in capsys.readouterr().err  # reader exists; the toy root lacks its layout


def test_prompt_templates_are_filled_literally():
    # one template path (lseg.labels.fill_template): "a {} {x}" is a valid template, not a KeyError
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test").eval()
    got = encode_labels(model, ["dog"], ["a {} {x}"])
    with torch.no_grad():
        ref = model.encode_text(["a dog {x}"])
    torch.testing.assert_close(got, ref / ref.norm(dim=-1, keepdim=True))
    assert EvalConfig(dataset="ade20k", templates=("a {} {x}",)).templates == ("a {} {x}",)
    with pytest.raises(lseg.ConfigError, match="exactly one"):
        EvalConfig(dataset="ade20k", templates=("a {} {}",))

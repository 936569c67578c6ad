"""Named recipes and config resolution (:mod:`lseg.train.recipes`): the reference's runs, files, overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lseg.errors import ConfigError
from lseg.train import get_recipe, list_recipes, load_config


def test_paper_recipe_matches_reference_train_sh():
    cfg = get_recipe("ade20k_vitl16_paper")
    assert (cfg.dataset, cfg.model, cfg.batch_size, cfg.accumulate_grad_batches, cfg.epochs) == (
        "ade20k", "lseg_vitl16_384", 1, 2, 240,
    )
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.poly_power) == ("sgd", 0.9, 1e-4, 0.9)
    assert (cfg.crop_size, cfg.base_size, cfg.precision) == (480, 520, "32-true")
    # Deliberately different: the full ADE names (the truncated list's duplicate "screen" makes class 130
    # unpredictable); --label-style reference restores them.
    assert cfg.label_style == "full"
    # Issue 15: validation every epoch, top 3 by pixel accuracy; per-GPU loss means; 8 GPUs recorded.
    assert (cfg.val_split, cfg.val_every_n_epochs, cfg.save_top_k, cfg.monitor) == ("val", 1, 3, "pixAcc")
    assert (cfg.loss_reduction, cfg.reference_devices, cfg.lr_schedule_interval) == ("reference", 8, "epoch")
    # Reference bug 12: base_lr / 16 * per-GPU batch, whatever the GPU count: 2.5e-4 (decoder x10).
    assert cfg.replace(devices=8).lr == pytest.approx(2.5e-4)
    assert cfg.decoder_lr_mult == 10
    # The linear-scaling alternative uses the global batch: 8 GPUs x 1 x 2 = 16 images -> 0.004.
    assert cfg.replace(devices=8, lr_scaling="global").lr == pytest.approx(0.004)
    assert cfg.replace(lr_scaling="none", base_lr=0.1).lr == 0.1
    assert "folder_finetune" in list_recipes()


@pytest.mark.parametrize("fold", [0, 3])
def test_zero_shot_recipes_match_the_reference_zs_module(fold: int):
    cfg = get_recipe(f"pascal5i_fold{fold}_zs")
    assert (cfg.dataset, cfg.split, cfg.fold, cfg.val_split, cfg.model) == ("pascal5i", "trn", fold, "val", "lseg_rn101_zs")
    assert (cfg.batch_size, cfg.fewshot_support, cfg.fewshot_boundary, cfg.crop_size) == (20, 1, "others", 480)
    assert cfg.lr == pytest.approx(0.005) and cfg.lr * cfg.decoder_lr_mult == pytest.approx(0.05)
    # exit() after epoch index 3, before its checkpoint: epochs 0-2 of a 200-epoch poly schedule survive
    assert (cfg.epochs, cfg.schedule_epochs, cfg.lr_schedule_interval) == (3, 200, "epoch")
    assert (cfg.monitor, cfg.loss_reduction, cfg.reference_devices) == ("mIoU", "reference", None)
    assert get_recipe(f"coco20i_fold{fold}_zs").replace(model="x").dataset == "coco20i"
    assert get_recipe("fss1000_vitl16_zs").model == "lseg_vitl16_384"
    assert get_recipe("fss1000_rn101_zs").model == "lseg_rn101_zs"
    assert get_recipe("fss1000_rn101_zs").epochs == 200


def test_file_with_recipe_and_overrides(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "recipe: folder_finetune\nbatch_size: 2\ndataset_kwargs: {}\nscale_range: [0.75, 1.25]\n", encoding="utf-8"
    )
    cfg = load_config(path, {"base-lr": "0.002", "dataset_kwargs.aug": True, "epochs": None, "max_steps": "100"})
    assert cfg.batch_size == 2 and cfg.epochs is None and cfg.max_steps == 100
    assert cfg.base_lr == 0.002 and cfg.dataset_kwargs == {"aug": True}
    assert cfg.scale_range == (0.75, 1.25)
    assert cfg.out_dir == get_recipe("folder_finetune").out_dir  # untouched recipe field
    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps({"optimizer": "adam", "devices": 2}), encoding="utf-8")
    assert load_config(json_path).optimizer == "adam"


def test_unknown_recipe_or_file():
    with pytest.raises(ConfigError, match="neither a recipe"):
        load_config("no_such_recipe")


@pytest.mark.parametrize("key", ["scale_range.x", "model.x", "no_such_field.x"])
def test_dotted_key_on_a_field_that_is_not_a_dict(key: str):
    with pytest.raises(ConfigError, match="only dict fields accept dotted keys"):
        load_config("folder_finetune", {key: 1})


@pytest.mark.parametrize(("text", "where"), [("batch_size: [4\n", "line 2, column 1"), ("a: 1\n\tb: 2\n", "line 2")])
def test_a_config_file_yaml_cannot_parse_is_one_line_naming_the_line(tmp_path: Path, text: str, where: str):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=where) as info:  # before: YAML's own five-line report
        load_config(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)

"""TrainConfig, recipes, config files and the `lseg train` flag parsing (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lseg.cli import main
from lseg.errors import ConfigError
from lseg.train import TrainConfig, get_recipe, load_config
from lseg.train.config import dump_config


def test_schedule_epochs_and_new_field_checks():
    with pytest.raises(ConfigError, match="schedule_epochs"):
        TrainConfig(epochs=5, schedule_epochs=3)
    with pytest.raises(ConfigError, match="schedule_epochs"):
        TrainConfig(max_steps=5, schedule_epochs=3)
    with pytest.raises(ConfigError, match="fold"):
        TrainConfig(fold=4)
    with pytest.raises(ConfigError, match="monitor"):
        TrainConfig(monitor="loss")  # type: ignore[arg-type]


def test_dumped_config_round_trips(tmp_path: Path):
    cfg = get_recipe("ade20k_vitl16_paper").replace(data_root="/data", devices=8, dataset_kwargs={"x": 1},
                                                    out_dir="/runs/ade")
    path = dump_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg


def test_dumped_config_names_its_folders_absolutely(tmp_path: Path, monkeypatch):
    """Replayed from another working directory (a job script), the config resumes the same run."""
    monkeypatch.chdir(tmp_path)
    path = dump_config(TrainConfig(data_root="toy", out_dir="runs/a"), tmp_path / "config.yaml")
    monkeypatch.chdir("/")
    cfg = load_config(path)
    assert (cfg.data_root, cfg.out_dir) == (str(tmp_path / "toy"), str(tmp_path / "runs" / "a"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_sise": 2}, "unknown"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "two"}, "integer"),
        ({"optimizer": "lamb"}, "optimizer"),
        ({"precision": "fp8"}, "precision"),
        ({"scale_range": [2.0, 1.0]}, "scale_range"),
        ({"pretrained_backbone": "maybe"}, "true or false"),
    ],
)
def test_invalid_values_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig().replace(**changes)


def test_cli_flags_override_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "run.yaml"
    path.write_text("recipe: ade20k_vitl16_paper\nbatch_size: 2\n", encoding="utf-8")
    rc = main([
        "train", "--config", str(path), "--batch-size", "4", "--lr", "1e-3", "--pretrained-backbone",
        "--progress-bar", "false", "--set", "dataset_kwargs.aug=true", "--set", "epochs=null",
        "--max-steps", "10", "--print-config",
    ])
    assert rc == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["batch_size"] == 4 and cfg["base_lr"] == 1e-3 and cfg["pretrained_backbone"] is True
    assert cfg["progress_bar"] is False and cfg["dataset_kwargs"] == {"aug": True}
    assert cfg["epochs"] is None and cfg["max_steps"] == 10 and cfg["accumulate_grad_batches"] == 2


def test_cli_reports_bad_config(capsys: pytest.CaptureFixture[str]):
    assert main(["train", "--config", "ade20k_vitl16_paper", "--batch-size", "-1", "--print-config"]) == 2
    assert "batch_size" in capsys.readouterr().err

"""TrainConfig, recipes, config files and the `lseg train` flag parsing (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lseg.cli import main
from lseg.errors import ConfigError
from lseg.train import TrainConfig, get_recipe, load_config
from lseg.train.config import absolute_inputs, dump_config


def test_schedule_epochs_and_new_field_checks():
    with pytest.raises(ConfigError, match="schedule_epochs"):
        TrainConfig(epochs=5, schedule_epochs=3)
    with pytest.raises(ConfigError, match="schedule_epochs"):
        TrainConfig(max_steps=5, schedule_epochs=3)
    with pytest.raises(ConfigError, match=r"fold must be in \[0, 3\], got 4"):
        TrainConfig(fold=4)
    with pytest.raises(ConfigError, match="monitor"):
        TrainConfig(monitor="loss")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="schedule_epochs \\(3\\) must be at least epochs \\(5\\)"):
        TrainConfig(epochs=5, schedule_epochs=3)


def test_dumped_config_round_trips(tmp_path: Path):
    cfg = get_recipe("ade20k_vitl16_paper").replace(data_root="/data", devices=8, dataset_kwargs={"x": 1},
                                                    out_dir="/runs/ade")
    path = dump_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg


def test_dumped_config_names_its_folders_absolutely(tmp_path: Path, monkeypatch):
    """Replayed from another working directory (a job script), the config resumes the same run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy").mkdir()
    path = dump_config(absolute_inputs(TrainConfig(data_root="toy", out_dir="runs/a")), tmp_path / "config.yaml")
    monkeypatch.chdir("/")
    cfg = load_config(path)
    assert (cfg.data_root, cfg.out_dir) == (str(tmp_path / "toy"), str(tmp_path / "runs" / "a"))



def test_absolute_inputs_makes_the_local_paths_a_run_reads_absolute(tmp_path: Path, monkeypatch):
    """Existing local paths become absolute; released names, ``openai``, Hub ids and other keywords stay."""
    monkeypatch.chdir(tmp_path)
    for name in ("splits", "init", "clip.pt", "labels.txt"):
        (tmp_path / name).touch()
    cfg = absolute_inputs(TrainConfig(
        init_checkpoint="init", clip_text_weights="clip.pt", dataset_kwargs={"splits_dir": "splits", "aug": "init"},
        val_dataset_kwargs={"labels_file": "labels.txt", "missing_dir": "nowhere"}))
    assert (cfg.init_checkpoint, cfg.clip_text_weights) == (str(tmp_path / "init"), str(tmp_path / "clip.pt"))
    assert cfg.dataset_kwargs == {"splits_dir": str(tmp_path / "splits"), "aug": "init"}
    assert cfg.val_dataset_kwargs == {"labels_file": str(tmp_path / "labels.txt"), "missing_dir": "nowhere"}
    (tmp_path / "demo").mkdir()
    named = absolute_inputs(TrainConfig(init_checkpoint="demo", clip_text_weights="openai"))
    assert (named.init_checkpoint, named.clip_text_weights) == ("demo", "openai")
    assert absolute_inputs(TrainConfig(init_checkpoint="owner/repo")).init_checkpoint == "owner/repo"

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
        ({"scale_range": [0.0, 1.0]}, "scale_range must be positive, got 0"),
        ({"hflip_prob": 1.5}, r"hflip_prob must be in \[0, 1\], got 1.5"),
        ({"fewshot_support": -1}, "fewshot_support must be at least 0, got -1"),
        ({"save_top_k": -1}, "save_top_k must be at least 0, got -1"),
        ({"num_workers": -1}, "num_workers must be at least 0, got -1"),
        ({"checkpoint_every_n_steps": -1}, "checkpoint_every_n_steps must be at least 0"),
        ({"log_every_n_steps": 0}, "log_every_n_steps must be at least 1, got 0"),
        ({"epochs": 0}, "epochs must be at least 1, got 0"),
        ({"reference_devices": 0}, "reference_devices must be at least 1, got 0"),
        ({"base_lr": 0}, "base_lr must be positive, got 0"),
        ({"weight_decay": -1e-4}, "weight_decay must be at least 0"),
        ({"devices": 0}, "devices must be at least 1, got 0"),
        ({"crop_size": 16}, "crop_size must be at least 32, got 16"),
        ({"accelerator": "tpu"}, "accelerator must be one of 'auto', 'cpu', 'cuda', 'gpu', 'mps', got 'tpu'"),
        ({"strategy": "fsdp"}, "strategy must be one of 'auto', 'ddp', 'ddp_find_unused_parameters_true'"),
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


def test_cli_reports_bad_config(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    """One line naming the field as it was given: an option, ``--set``, or the config file's key."""
    assert main(["train", "--config", "ade20k_vitl16_paper", "--batch-size", "-1", "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch-size must be at least 1, got -1"
    assert main(["train", "--set", "hflip_prob=2", "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == "error: --set hflip_prob must be in [0, 1], got 2"
    path = tmp_path / "run.yaml"
    path.write_text("batch_size: 0\n", encoding="utf-8")
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == "error: batch_size must be at least 1, got 0"


def test_a_gpu_this_machine_lacks_is_one_error_before_fabric_starts(monkeypatch, tmp_path: Path, capsys):
    """Not Lightning's 25-line traceback ending ``RuntimeError: No supported gpu backend found!``."""
    import lightning.fabric
    import torch

    import lseg.train.loop  # noqa: F401  # imported before torch.cuda is patched (torch._dynamo wraps it)

    monkeypatch.setattr(lightning.fabric, "Fabric", lambda *a, **k: pytest.fail("Fabric started"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for accelerator in ("gpu", "cuda"):
        assert main(["train", "--accelerator", accelerator, "--data-root", str(tmp_path / "none"),
                     "--out-dir", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --accelerator {accelerator}: ") and \
            "on this machine; use --accelerator cpu" in err[0], err
    assert main(["train", "--device", "mps", "--data-root", str(tmp_path)]) == 2  # --device: its alias
    assert "error: --accelerator mps: MPS is not available on this machine" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(["train", "--accelerator", "gpu", "--devices", "4", "--data-root", str(tmp_path)]) == 2
    assert "error: --devices 4: this machine has 2 CUDA GPU(s)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_help_shows_each_default_once(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--set KEY=VALUE override any field (repeatable) --print-config" in text  # no "(default: )"
    assert "lr_t = lr * (1 - t / T) ^ poly_power (float, default 0.9)" in text
    assert "--data-root /data/Datasets_HSN \\ --set" in text


def test_dataset_kwargs_never_hold_what_has_its_own_option():
    """``{split: val}`` among the reader's keywords once met the registry's own ``split``: a raw TypeError."""
    from lseg.eval.config import EvalConfig

    with pytest.raises(ConfigError, match="dataset_kwargs holds split: set split with its own option"):
        EvalConfig(dataset="folder", data_root="x", dataset_kwargs={"split": "val"})
    with pytest.raises(ConfigError, match="holds label_style"):
        TrainConfig(dataset="folder", data_root="x", val_dataset_kwargs={"label_style": "clean"})
    assert TrainConfig(dataset="folder", data_root="x", dataset_kwargs={"aug": True}).dataset_kwargs == {"aug": True}

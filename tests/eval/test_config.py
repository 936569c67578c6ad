"""EvalConfig: options that belong to their own flag are refused among the reader's keywords."""

from __future__ import annotations

import pytest

import lseg.eval.evaluate as evaluate_module
from lseg.cli import main
from lseg.errors import ConfigError
from lseg.eval.config import EvalConfig


def test_the_coco20i_sampler_seed_is_the_seed_option(tmp_path, monkeypatch, capsys):
    """`--seed 5 --dataset-kwargs "{seed: 3}"` drew the episodes with seed 3 while the report said 5."""
    with pytest.raises(ConfigError, match=r"dataset_kwargs holds seed: set seed with its own option \(--seed\)"):
        EvalConfig(dataset="coco20i", data_root=str(tmp_path), dataset_kwargs={"seed": 3})
    assert main(["eval", "--random-weights", "lseg_tiny_test", "--dataset", "coco20i", "--data-root", str(tmp_path),
                 "--dataset-kwargs", "{seed: 3}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: --dataset-kwargs holds seed: set seed with its own option (--seed), "
                       "not among the reader's keywords")
    seen: dict = {}

    def reader(name, root, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "build_fewshot_dataset", reader)
    model = type("M", (), {"precision": "fp32", "set_precision": lambda self, p: None})()
    with pytest.raises(KeyboardInterrupt):
        evaluate_module.evaluate(model, EvalConfig(dataset="coco20i", data_root=str(tmp_path), seed=5))
    assert seen["seed"] == 5

"""One group of two processes for every test whose subject is a multi-process run (import as
``process_group``; the session fixture ``two_processes`` of ``tests/conftest.py`` runs it once).

Starting two processes (each importing torch, Lightning and lseg) and their rendezvous cost more than
the runs themselves, so the three multi-process commands of the suite run one after the other in the
same two ranks of one ``torchrun --standalone --nproc_per_node=2`` (this file is the script):

* ``features``: sharded by torchrun's ``RANK`` / ``WORLD_SIZE`` (no process group);
* ``eval --devices 2``: Fabric's DDP in torchrun's processes (it creates the gloo process group);
* ``train --devices 2``: Fabric's DDP again (the group exists: Fabric uses it), synchronised BatchNorm.

Each test compares its command's outputs with a single-process run of its own (see the tests in
``features/test_export.py``, ``eval/test_evaluate.py`` and ``train/test_loop.py``). Each command's
stderr is kept per rank; its exit code per rank is in ``exit_codes.rank<R>.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Inputs and arguments of the ``features`` command (p32 model, 64 px).
FEATURES_MODEL_ARGS = ["--random-weights", "lseg_tiny_test_p32", "--size", "64", "--device", "cpu", "-q"]


def random_images(folder: Path, n: int = 6) -> list[Path]:
    """``img0.png`` ... : noise images, 40+4i x 56."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 56, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def eval_inputs(root: Path) -> tuple[Path, Path]:
    """(data root, model folder) of the two-process evaluation: 5 toy images and one unreadable one."""
    import torch

    import lseg
    from lseg.train.toy import make_toy_dataset

    data = make_toy_dataset(root / "toy", num_images=5, size=(40, 56), seed=4)
    (data / "images" / "toy_9999.png").write_bytes(b"broken")
    shutil.copy(data / "masks" / "toy_0000.png", data / "masks" / "toy_9999.png")
    torch.manual_seed(0)
    model_dir = lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), root / "tiny")
    return data, model_dir


def ddp_train_config(data_root: Path, out_dir: Path):  # -> TrainConfig
    """The DDP test's configuration (the tiny one of ``train/helpers.py``, with validation).

    Wide rescale range: crops get padding (ignored pixels) in different amounts on the two ranks.
    2 steps per epoch: validation (sharded over the two processes) after step 2.
    Seed 1: with seed 0 (since masks are resampled at pixel centres) the 2nd and 3rd steps land where
    the tiny decoder amplifies fp32 rounding ~300x per step (max diff 1e-7 after step 1, 3e-5 after 2,
    2e-4 after 3); seeds 1 and 2 stay at ~1.5e-7 after 3 steps.
    """
    from train.helpers import tiny_train_config

    return tiny_train_config(data_root, out_dir).replace(
        batch_size=2, accumulate_grad_batches=2, max_steps=3, scale_range=(0.5, 1.5), sync_batchnorm=True,
        val_split="val", monitor="mIoU", seed=1,
    )


@dataclass(frozen=True)
class TwoProcessRun:
    """What the two ranks did: per command, the exit code and stderr of each rank, and its inputs."""

    root: Path
    exit_codes: dict[str, list[int]]
    stderr: dict[str, str]  # both ranks' stderr, rank 0 first
    features_in: Path
    features_out: Path
    eval_data: Path
    eval_model: Path
    eval_report: Path
    train_data: Path
    train_config: object  # the TrainConfig of the DDP run (out_dir: train_out)
    train_out: Path


_JOBS = ("features", "eval", "train")


def _paths(root: Path) -> dict[str, Path]:
    return {
        "features_in": root / "features" / "in", "features_out": root / "features" / "out",
        "eval_data": root / "eval" / "toy", "eval_model": root / "eval" / "tiny", "eval_report": root / "eval" / "ddp.json",
        "train_data": root / "train" / "data", "train_out": root / "train" / "ddp",
    }


def run_two_processes(root: Path) -> None:
    """Write the inputs under ``root`` and run the three commands in one torchrun group (the results stay
    in ``root``: :func:`read_two_process_run`)."""
    import yaml

    from lseg.train.toy import make_toy_dataset

    p = _paths(root)
    random_images(p["features_in"])
    eval_data, eval_model = eval_inputs(root / "eval")
    assert (eval_data, eval_model) == (p["eval_data"], p["eval_model"])
    make_toy_dataset(p["train_data"], num_images=8, size=64, seed=0)
    (p["train_data"] / "splits").mkdir()
    (p["train_data"] / "splits" / "val.txt").write_text("".join(f"toy_{i:04d}\n" for i in range(4)))
    config_file = root / "train" / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(ddp_train_config(p["train_data"], p["train_out"]).to_dict()), encoding="utf-8")
    jobs = {
        "features": ["features", str(p["features_in"]), "--out", str(p["features_out"]), *FEATURES_MODEL_ARGS],
        "eval": ["eval", "-c", str(eval_model), "--dataset", "folder", "--data-root", str(eval_data), "--size", "48",
                 "--crop-size", "32", "--devices", "2", "--device", "cpu", "--num-workers", "0", "--out",
                 str(p["eval_report"]), "-q"],
        "train": ["train", "--config", str(config_file), "--devices", "2", "--batch-size", "1", "--out-dir",
                  str(p["train_out"]), "--resume", "never"],
    }
    assert tuple(jobs) == _JOBS
    (root / "jobs.json").write_text(json.dumps(jobs))
    (root / "tmp").mkdir(exist_ok=True)  # torchrun's torchelastic_* folders stay there, not in /tmp
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1",
               TMPDIR=str(root / "tmp"),
               GLOO_SOCKET_IFNAME="lo", PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                                     os.environ.get("PYTHONPATH", "")]))
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", __file__, str(root)], env=env,
                          capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def read_two_process_run(root: Path) -> TwoProcessRun:
    """What :func:`run_two_processes` left in ``root``."""
    p = _paths(root)
    codes = [json.loads((root / f"exit_codes.rank{r}.json").read_text()) for r in (0, 1)]
    return TwoProcessRun(
        root=root, exit_codes={job: [c[job] for c in codes] for job in _JOBS},
        stderr={job: "".join((root / f"{job}.rank{r}.err").read_text() for r in (0, 1)) for job in _JOBS},
        train_config=ddp_train_config(p["train_data"], p["train_out"]), **p,
    )


def _rank_main(root: Path) -> None:
    """In each torchrun rank: the jobs in order, each with its stderr in a file of its own."""
    import contextlib

    from lseg.cli import main

    rank = int(os.environ["RANK"])
    codes = {}
    for job, args in json.loads((root / "jobs.json").read_text()).items():
        with open(root / f"{job}.rank{rank}.err", "w") as err, contextlib.redirect_stderr(err):
            codes[job] = main(args)
    (root / f"exit_codes.rank{rank}.json").write_text(json.dumps(codes))


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))

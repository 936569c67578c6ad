"""Write checkpoints laid out exactly as the released LSeg ``.ckpt`` files (helpers, not tests).

The released files were written by PyTorch-Lightning 1.4.9 under torch 1.9 on GPUs
(``Trainer.save_checkpoint`` -> ``atomic_save``: ``torch.save`` into a ``BytesIO``, so the zip's
folder is ``archive/``). This module reproduces that container without installing either:

* top-level keys ``epoch``, ``global_step``, ``pytorch-lightning_version``, ``state_dict``
  (``net.<reference key>``), ``callbacks`` keyed by the callback *class* (Lightning 1.4's
  ``callback_states[type(callback)]``, so the pickle holds ``GLOBAL
  pytorch_lightning.callbacks.model_checkpoint ModelCheckpoint``), ``optimizer_states`` (SGD with
  a momentum buffer per trained parameter), ``lr_schedulers`` (a ``LambdaLR`` state) and
  ``native_amp_scaling_state``; optionally ``hyper_parameters`` (``AttributeDict`` holding an
  ``argparse.Namespace``, as fine-tuned checkpoints of downstream projects carry);
* storages tagged ``cuda:0`` and pickled as torch 1.9 does (protocol 2, ``torch.FloatStorage`` /
  ``HalfStorage`` / ``LongStorage`` globals, ``_rebuild_tensor_v2``, keys ``"0", "1", ...``);
* the torch 1.9 zip: ``archive/data.pkl``, ``archive/data/<key>`` (stored, 64-byte aligned with an
  ``FB`` padding extra field), ``archive/version`` = ``3``; no ``byteorder`` or ``.data/`` records
  (later torch versions add those). ``--legacy`` writes the pre-1.6 non-zip format instead.

Run it in a subprocess (``python -m refimpl.lightning14 IN.safetensors OUT.ckpt``, or several files
with ``--jobs JOBS.json``, a list of such argument lists, as :func:`write_released_layouts` does): it
registers stand-in ``pytorch_lightning`` modules in *that* process only, so the process that loads the
file has never seen them.
"""

from __future__ import annotations

import argparse
import io
import pickle
import struct
import sys
import types
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

__test__ = False

_STORAGE_CLASS = {
    torch.float32: "FloatStorage", torch.float16: "HalfStorage", torch.int64: "LongStorage",
    torch.float64: "DoubleStorage", torch.int32: "IntStorage", torch.uint8: "ByteStorage", torch.bool: "BoolStorage",
}


def _register_fake_lightning() -> dict[str, type]:
    """Modules and classes under the names Lightning 1.4 pickles (only in this process)."""
    classes: dict[str, type] = {}

    def module(name: str) -> types.ModuleType:
        mod = sys.modules.get(name) or types.ModuleType(name)
        sys.modules[name] = mod
        return mod

    for full in (
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
        "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
    ):
        mod_name, _, cls_name = full.rpartition(".")
        parts = mod_name.split(".")
        for i in range(1, len(parts) + 1):
            module(".".join(parts[:i]))
        cls = type(cls_name, (), {"__module__": mod_name, "__qualname__": cls_name})
        setattr(sys.modules[mod_name], cls_name, cls)
        classes[cls_name] = cls
    for name in ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"):
        module(name)

    class AttributeDict(dict):  # Lightning's: a dict whose keys are also attributes
        __module__ = "pytorch_lightning.utilities.parsing"
        __qualname__ = "AttributeDict"

        def __getattr__(self, key):  # type: ignore[no-untyped-def]
            try:
                return self[key]
            except KeyError as e:
                raise AttributeError(key) from e

        def __setattr__(self, key, value):  # type: ignore[no-untyped-def]
            self[key] = value

    sys.modules["pytorch_lightning.utilities.parsing"].AttributeDict = AttributeDict  # type: ignore[attr-defined]
    classes["AttributeDict"] = AttributeDict
    return classes


def lightning_checkpoint(
    state_dict: dict[str, torch.Tensor], classes: dict[str, type], *, hyper_parameters: bool = False,
    epoch: int = 199, global_step: int = 101_400,
) -> dict:
    """The dict ``Trainer.save_checkpoint`` of Lightning 1.4.9 builds for ``LSegModule``."""
    sd = OrderedDict(("net." + k, v) for k, v in state_dict.items())
    # SGD over the two reference groups (net.pretrained, net.scratch x10); CLIP is in no group
    groups = [
        [k for k in sd if k.startswith("net.pretrained.") and _is_param(k)],
        [k for k in sd if k.startswith("net.scratch.") and _is_param(k)],
    ]
    g = torch.Generator().manual_seed(1)
    state, params, i = {}, [], 0
    for keys in groups:
        ids = []
        for k in keys:
            state[i] = {"momentum_buffer": torch.randn(sd[k].shape, generator=g, dtype=torch.float32) * 1e-3}
            ids.append(i)
            i += 1
        params.append(ids)
    lr = 0.004 / 16
    ckpt = {
        "epoch": epoch,
        "global_step": global_step,
        "pytorch-lightning_version": "1.4.9",
        "state_dict": sd,
        "callbacks": {
            classes["ModelCheckpoint"]: {
                "monitor": "val_acc_epoch", "best_model_score": torch.tensor(0.8123),
                "best_model_path": "/checkpoints/lseg_ade20k_l16/version_0/checkpoints/result-epoch=199-val_acc_epoch=0.81.ckpt",
                "current_score": torch.tensor(0.8101), "dirpath": "/checkpoints/lseg_ade20k_l16/version_0/checkpoints",
            },
            classes["EarlyStopping"]: {"wait_count": 0, "stopped_epoch": 0, "best_score": torch.tensor(0.81), "patience": 3},
        },
        "optimizer_states": [{
            "state": state,
            "param_groups": [
                {"lr": lr * f, "momentum": 0.9, "dampening": 0, "weight_decay": 1e-4, "nesterov": False,
                 "initial_lr": lr * f, "params": ids}
                for f, ids in zip((1, 10), params)
            ],
        }],
        "lr_schedulers": [{
            "base_lrs": [lr, lr * 10], "last_epoch": epoch + 1, "_step_count": epoch + 2, "verbose": False,
            "_get_lr_called_within_step": False, "_last_lr": [lr * 0.01, lr * 0.1], "lr_lambdas": [None, None],
        }],
        "native_amp_scaling_state": {
            "scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0,
        },
    }
    if hyper_parameters:
        ns = argparse.Namespace(backbone="clip_vitl16_384", num_features=256, arch_option=0, base_lr=0.004)
        ckpt["hparams_name"] = "kwargs"
        ckpt["hyper_parameters"] = classes["AttributeDict"](args=ns, dataset="ade20k", widehead=True)
    return ckpt


def _is_param(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


class _Torch19Pickler(pickle.Pickler):
    """Pickles tensors as torch 1.9's ``torch.save`` did, with every storage on ``cuda:0``."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=2)
        self.storages: dict[str, torch.storage.TypedStorage] = {}
        self._keys: dict[int, str] = {}

    def persistent_id(self, obj):  # type: ignore[no-untyped-def]
        if isinstance(obj, torch.storage.TypedStorage):
            key = self._keys.setdefault(obj._cdata, str(len(self._keys)))
            self.storages[key] = obj
            return ("storage", getattr(torch, _STORAGE_CLASS[obj.dtype]), key, "cuda:0", obj.size())
        return None


def _storage_bytes(storage: torch.storage.TypedStorage) -> bytes:
    return torch.tensor([], dtype=storage.dtype).set_(storage).numpy().tobytes()


def write_zip(obj: object, path: Path) -> None:
    """torch 1.9 zip container (``archive/`` records, 64-byte aligned data)."""
    buf = io.BytesIO()
    pickler = _Torch19Pickler(buf)
    pickler.dump(obj)
    records = [("archive/data.pkl", buf.getvalue())]
    records += [(f"archive/data/{k}", _storage_bytes(pickler.storages[k])) for k in sorted(pickler.storages)]
    records.append(("archive/version", b"3\n"))
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            # torch's writer pads the local header's extra field ("FB") so each record starts at a
            # multiple of 64 bytes (what lets the file be memory-mapped)
            pad = (-(f.tell() + 30 + len(name.encode()) + 4)) % 64
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            zf.writestr(info, data)


class _CudaTagLegacyPickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """For ``torch.save(_use_new_zipfile_serialization=False)``: re-tags storages as ``cuda:0``."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "persistent_id":
            inner = value

            def value(obj):  # type: ignore[no-untyped-def]
                pid = inner(obj)  # type: ignore[operator]
                return pid if pid is None or pid[0] != "storage" else (*pid[:3], "cuda:0", *pid[4:])
        super().__setattr__(name, value)


def write_legacy(obj: object, path: Path) -> None:
    """The pre-1.6 non-zip format (magic number, protocol, sys info, pickle, raw storages)."""
    shim = types.SimpleNamespace(__name__="pickle", Pickler=_CudaTagLegacyPickler, dump=pickle.dump)
    with open(path, "wb") as f:
        torch.save(obj, f, pickle_module=shim, pickle_protocol=2, _use_new_zipfile_serialization=False)


def write_released_layouts(
    folder: Path, specs: dict[str, tuple[str, tuple[str, ...]]], seed: int = 0
) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Tiny reference networks saved as released checkpoints ``folder/<key>.ckpt``, all in one subprocess.

    ``specs``: key -> (tiny registry name, this module's options); each network is built with
    ``torch.manual_seed(seed)``. Returns key -> (checkpoint path, the reference network).
    """
    import json
    import subprocess

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    out = read_released_layouts(folder, specs, seed)
    jobs = []
    for key, (path, ref) in out.items():
        sd_path = folder / f"{key}-sd.safetensors"
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(sd_path))
        jobs.append([str(sd_path), str(path), *specs[key][1]])
    (folder / "jobs.json").write_text(json.dumps(jobs))
    tests = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "refimpl.lightning14", "--jobs", str(folder / "jobs.json")], cwd=tests,
                   check=True, capture_output=True, text=True, timeout=600)
    return out


def read_released_layouts(
    folder: Path, specs: dict[str, tuple[str, tuple[str, ...]]], seed: int = 0
) -> dict[str, tuple[Path, torch.nn.Module]]:
    """What :func:`write_released_layouts` returns for files it wrote before (the networks built again:
    seeded, so the same)."""
    from .tiny import tiny_reference

    out: dict[str, tuple[Path, torch.nn.Module]] = {}
    for key, (name, _) in specs.items():
        torch.manual_seed(seed)
        out[key] = (folder / f"{key}.ckpt", tiny_reference(name))
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--jobs"]:
        import json

        for job in json.loads(Path(argv[1]).read_text()):
            main(job)
        return
    p = argparse.ArgumentParser()
    p.add_argument("state_dict", help="safetensors file with official (reference) keys, no 'net.' prefix")
    p.add_argument("out")
    p.add_argument("--legacy", action="store_true")
    p.add_argument("--hyper-parameters", action="store_true")
    p.add_argument("--extra-optimizer-mb", type=int, default=0,
                   help="add this much optimizer state (stands in for a full-size network's momentum)")
    p.add_argument("--payload", choices=("none", "unknown-global", "code"), default="none",
                   help="negative cases: an unknown class instance / a reduce that runs code")
    args = p.parse_args(argv)
    from safetensors.torch import load_file

    warnings.filterwarnings("ignore", message="TypedStorage is deprecated")  # torch 1.9's storages are typed
    classes = _register_fake_lightning()
    ckpt = lightning_checkpoint(load_file(args.state_dict), classes, hyper_parameters=args.hyper_parameters)
    if args.extra_optimizer_mb:
        n = args.extra_optimizer_mb * 2**20 // 4
        ckpt["optimizer_states"][0]["state"][10**6] = {"momentum_buffer": torch.ones(n)}
    if args.payload == "unknown-global":
        ckpt["callbacks"][type("CustomCallback", (), {"__module__": "my_project.callbacks"})] = {"x": 1}
        sys.modules["my_project"] = types.ModuleType("my_project")
        sys.modules["my_project.callbacks"] = mod = types.ModuleType("my_project.callbacks")
        mod.CustomCallback = next(k for k in ckpt["callbacks"] if k.__name__ == "CustomCallback")  # type: ignore[attr-defined]
    elif args.payload == "code":
        ckpt["hyper_parameters"] = _RunsCode(str(Path(args.out).with_suffix(".PWNED")))
    (write_legacy if args.legacy else write_zip)(ckpt, Path(args.out))


class _RunsCode:
    """Unpickling this would create a file (it must never happen)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, (f"touch {self.marker}",))


if __name__ == "__main__":
    main()

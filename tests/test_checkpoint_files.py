"""Released-checkpoint containers, read as downloaded.

Every file here is written by ``refimpl.lightning14`` in a subprocess, laid out exactly as the
released lang-seg ``.ckpt`` files (PyTorch-Lightning 1.4.9 / torch 1.9 zip under ``archive/``,
storages tagged ``cuda:0``, callback *classes* as dict keys, optimizer and scheduler state), one per
network family. This process never imports the stand-in ``pytorch_lightning`` modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from refimpl.tiny import tiny_reference
from safetensors.torch import save_file

import lseg
from lseg.checkpoints import ALLOWED_GLOBALS, load_weights, read_checkpoint
from lseg.cli import main
from lseg.errors import CheckpointError

TESTS = Path(__file__).parent
FAMILIES = {
    # our tiny registry name: the released network family it has the layout of
    "lseg_tiny_test": "ViT-L/16 (demo_e200, fss_l16)",
    "lseg_tiny_test_p32": "ViT-B/32",
    "lseg_tiny_test_rn": "ResNet-101 zero-shot (pascal_fold*, coco_fold*, fss_rn101)",
}


def write_released_layout(tmp_path: Path, name: str, *args: str, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """A tiny reference network of family ``name`` saved as a released checkpoint (in a subprocess)."""
    torch.manual_seed(seed)
    ref = tiny_reference(name)
    sd_path = tmp_path / f"{name}-sd.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(sd_path))
    out = tmp_path / f"{name}{'-'.join(('',) + args).replace('--', '')}.ckpt"
    subprocess.run(
        [sys.executable, "-m", "refimpl.lightning14", str(sd_path), str(out), *args],
        cwd=TESTS, check=True, capture_output=True, text=True,
    )
    return out, ref


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    d = tmp_path_factory.mktemp("released")
    return {name: write_released_layout(d, name) for name in FAMILIES}


def test_the_fixture_is_the_torch19_lightning14_container(released):
    path, _ = released["lseg_tiny_test"]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "archive/data.pkl" and names[-1] == "archive/version"
        assert all(n.startswith("archive/data/") for n in names[1:-1])
        assert zf.read("archive/version") == b"3\n"
        assert not any("byteorder" in n or ".data/" in n for n in names)  # torch >= 2 adds those
        for info in zf.infolist()[1:-1]:  # data records are 64-byte aligned, as torch's writer does
            assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0
        pkl = zf.read("archive/data.pkl")
    assert pkl[:2] == b"\x80\x02"  # pickle protocol 2
    assert b"cuda:0" in pkl and b"\ncpu" not in pkl
    assert b"pytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint" in pkl
    for key in (b"optimizer_states", b"lr_schedulers", b"native_amp_scaling_state", b"momentum_buffer"):
        assert key in pkl
    assert "pytorch_lightning" not in sys.modules


@pytest.mark.parametrize("name", list(FAMILIES))
def test_released_layout_loads_strictly_and_equals_the_bare_state_dict(released, name, tmp_path, capsys):
    path, ref = released[name]
    ckpt = read_checkpoint(path)
    assert ckpt.format == "lightning"
    assert ckpt.metadata["pytorch-lightning_version"] == "1.4.9"
    assert ckpt.metadata["epoch"] == 199 and ckpt.metadata["global_step"] == 101_400
    assert ckpt.metadata["callbacks"] == ["EarlyStopping", "ModelCheckpoint"]

    model = lseg.load_model(path)
    assert model.config == lseg.get_config(name)
    bare = lseg.LSeg(lseg.get_config(name))
    load_weights(bare, ref.state_dict())  # the bare state dict, straight from the network
    a, b = model.state_dict(), bare.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)

    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "lightning"
    assert info["lightning"]["pytorch-lightning_version"] == "1.4.9" and info["lightning"]["epoch"] == 199
    assert info["config"]["name"] == name
    # parameters as the reference counts them (BatchNorm statistics are buffers, not parameters)
    assert info["parameters"] == sum(p.numel() for p in ref.parameters())
    assert info["tensors"] == len(ref.state_dict())

    out = tmp_path / "converted"
    assert main(["convert", str(path), str(out)]) == 0
    converted = lseg.load_model(out)
    c = converted.state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("variant", [("--legacy",), ("--hyper-parameters",), ("--legacy", "--hyper-parameters")])
def test_legacy_container_and_hyper_parameters_load(tmp_path, variant):
    path, ref = write_released_layout(tmp_path, "lseg_tiny_test", *variant)
    assert zipfile.is_zipfile(path) == ("--legacy" not in variant)
    ckpt = read_checkpoint(path)
    if "--hyper-parameters" in variant:
        assert "hyper_parameters" in ckpt.metadata["contents"]
    model = lseg.load_model(path)
    torch.testing.assert_close(model.pixel_proj.weight, ref.scratch.head1.weight, rtol=0, atol=0)


@pytest.mark.parametrize("payload,name", [("unknown-global", "my_project.callbacks.CustomCallback"),
                                          ("code", "posix.system")])
def test_unknown_globals_and_code_are_refused_in_one_line(tmp_path, capsys, payload, name):
    path, _ = write_released_layout(tmp_path, "lseg_tiny_test", "--payload", payload)
    with pytest.raises(CheckpointError) as e:
        lseg.load_model(path)
    assert f"Unsupported global: GLOBAL {name}" in str(e.value) and "\n" not in str(e.value)
    for cmd in (["info", str(path)], ["convert", str(path), str(tmp_path / "out")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: refusing to load") and err.count("\n") == 1
    assert not path.with_suffix(".PWNED").exists()  # the reduce never ran
    assert not (tmp_path / "out").exists()


def test_allowlisted_names_resolve_to_inert_stand_ins():
    from lseg.checkpoints import _stand_ins

    pairs = {name: obj for obj, name in _stand_ins()}
    assert set(pairs) == set(ALLOWED_GLOBALS)
    cb = pairs["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]
    assert cb.__module__ == "pytorch_lightning.callbacks.model_checkpoint" and cb(1, x=2) is not None
    assert pairs["pytorch_lightning.utilities.parsing.AttributeDict"]() == {}


_PEAK = """
import sys
from lseg.cli import main
rc = main(["convert", sys.argv[1], sys.argv[2]])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across exec
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")))  # KiB
sys.exit(rc)
"""


def test_optimizer_state_is_never_read_into_memory(tmp_path):
    """Converting a file with ~300 MB of optimizer state costs no more memory than one without:
    the zip is memory-mapped and only the model's tensors are touched."""
    small, _ = write_released_layout(tmp_path, "lseg_tiny_test")
    big, _ = write_released_layout(tmp_path, "lseg_tiny_test", "--extra-optimizer-mb", "300")
    assert big.stat().st_size > small.stat().st_size + 300e6
    peaks = []
    for path in (small, big):
        r = subprocess.run([sys.executable, "-c", _PEAK, str(path), str(tmp_path / path.stem)],
                           capture_output=True, text=True, check=True)
        peaks.append(int(r.stdout.split()[-1]) / 1024)
    assert peaks[1] - peaks[0] < 100, peaks  # MiB

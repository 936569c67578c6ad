"""lseg.pretrained.load: the one way to load (load_model) and build (create_model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pretrained.test_checkpoints import _tiny_official

import lseg
import lseg.models
import lseg.pretrained.checkpoints as ckpts
import lseg.pretrained.hub
from lseg.errors import CheckpointError, ConfigError
from lseg.models.config import SpatialBlockConfig


def _count_conversions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    convert = ckpts.convert_official_state_dict

    def counted(sd):  # type: ignore[no-untyped-def]
        calls.append(len(sd))
        return convert(sd)

    monkeypatch.setattr(ckpts, "convert_official_state_dict", counted)
    return calls


@pytest.mark.parametrize("arch_option", [0, 2])
def test_an_official_checkpoint_is_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch_option: int):
    """infer_config and load_weights accept official keys too, but load_model converts once and
    hands both the converted dict."""
    path, _ = _tiny_official(tmp_path, arch_option=arch_option)
    calls = _count_conversions(monkeypatch)
    block = SpatialBlockConfig(arch_option=2, block_depth=2) if arch_option else None
    model = lseg.load_model(path, spatial_block=block)
    assert len(calls) == 1
    assert model.config.spatial_block == (block or SpatialBlockConfig())


def test_create_model_from_an_official_checkpoint_converts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path, _ = _tiny_official(tmp_path)
    calls = _count_conversions(monkeypatch)
    assert lseg.create_model("lseg_tiny_test", path).config.name == "lseg_tiny_test"
    assert len(calls) == 1


def test_spatial_block_is_one_typed_value(tmp_path: Path):
    path, _ = _tiny_official(tmp_path, arch_option=1)
    block = SpatialBlockConfig(arch_option=1, block_depth=2, activation="tanh")
    model = lseg.load_model(path, spatial_block=block)
    assert model.config.spatial_block == block
    assert (model.config.arch_option, model.config.block_depth, model.config.activation) == (1, 2, "tanh")
    with pytest.raises(CheckpointError, match="arch_option=1\\|2 and block_depth"):
        lseg.load_model(path, spatial_block=SpatialBlockConfig())  # 0 names no block
    with pytest.raises(ConfigError, match="arch_option must be 0, 1 or 2, got 3"):
        SpatialBlockConfig(arch_option=3)
    with pytest.raises(ConfigError, match="block_depth must be >= 0"):
        SpatialBlockConfig(arch_option=1, block_depth=-1)
    cfg = lseg.get_config("lseg_tiny_test")
    assert cfg.with_spatial_block(block).spatial_block == block


def test_a_spatial_block_the_weights_contradict_is_refused_not_ignored(tmp_path: Path):
    """spatial_block (--arch-option, --block-depth) was silently dropped for an lseg folder (its config
    decides) and for an official checkpoint without a block."""
    block = SpatialBlockConfig(arch_option=2, block_depth=2)
    folder = lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "m")
    for source in (folder, folder / "model.safetensors"):
        with pytest.raises(CheckpointError, match="its own spatial block \\(arch_option 0\\): spatial_block \\(arch"):
            lseg.load_model(source, spatial_block=block)
        assert lseg.load_model(source, spatial_block=SpatialBlockConfig()).config.arch_option == 0  # what it says
    path, _ = _tiny_official(tmp_path)
    with pytest.raises(CheckpointError, match="has no spatial regularisation block: leave out arch_option"):
        lseg.load_model(path, spatial_block=block)


def test_a_missing_map_location_device_is_refused_before_any_download(monkeypatch: pytest.MonkeyPatch):
    """load_model("demo", map_location="cuda") on a machine without a GPU fetched and converted the weights,
    then raised torch's RuntimeError (Found no NVIDIA driver ...)."""
    from lseg.pretrained import load

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(load, "resolve", lambda *a, **k: pytest.fail("resolved before the device was checked"))
    with pytest.raises(ConfigError, match="map_location cuda: .* use map_location='cpu'"):
        lseg.load_model("demo", map_location="cuda")


def test_load_model_and_create_model_return_plain_eval_models(tmp_path: Path):
    model = lseg.create_model("lseg_tiny_test")
    assert not model.training and model.numerics == "plain"
    loaded = lseg.load_model(lseg.save_pretrained(model, tmp_path / "m"), map_location="cpu")
    assert not loaded.training and loaded.numerics == "plain"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_the_loading_layers_import_no_model_class_back():
    """checkpoints and hub are below the model (which inherits hub.HubMixin): neither may import
    lseg.models.lseg at run time, not even inside a function, nor anything that loads by name."""
    import ast

    def imports(module) -> set[str]:  # type: ignore[no-untyped-def]
        """Modules imported at run time (anywhere but under ``if TYPE_CHECKING``)."""
        tree = ast.parse(Path(module.__file__).read_text())
        typing_only = {id(sub) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
                       for sub in ast.walk(n)}
        nodes = [n for n in ast.walk(tree) if id(n) not in typing_only]
        return {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module} | {
            a.name for n in nodes if isinstance(n, ast.Import) for a in n.names
        }

    for module in (lseg.pretrained.hub, lseg.models):
        assert not {"lseg.models.lseg", "lseg.pretrained.released", "lseg.pretrained.load"} & imports(module), module.__name__
    assert not {"lseg.models.lseg", "lseg.pretrained.released", "lseg.pretrained.load"} & imports(ckpts)


def test_old_flat_config_json_still_loads(tmp_path: Path):
    """config.json keeps its flat spatial-block keys (files written before SpatialBlockConfig)."""
    model = lseg.LSeg(lseg.get_config("lseg_tiny_test").replace(arch_option=2, block_depth=3, activation="relu"))
    d = lseg.save_pretrained(model, tmp_path / "m")
    data = json.loads((d / "config.json").read_text())
    assert (data["arch_option"], data["block_depth"], data["activation"]) == (2, 3, "relu")
    assert "spatial_block" not in data
    # a file as an older lseg wrote it: the same flat keys, nothing else needed
    (d / "config.json").write_text(json.dumps(data, indent=None))
    loaded = lseg.load_model(d)
    assert loaded.config.spatial_block == SpatialBlockConfig(2, 3, "relu")
    assert loaded.spatial_block is not None

"""Parity against the official lang-seg code itself (not a port), at tiny widths.

``scripts/official_parity.py`` runs the official network code (``isl-org/lang-seg``'s
``modules/models``) with timm 0.4.12 and OpenAI's CLIP in a child process, loads its seeded random
weights into lseg through the official key map and compares the logits. It needs two folders outside
the repository: ``$LSEG_OFFICIAL_SRC`` (a lang-seg checkout) and ``$LSEG_TIMM0412`` (``pip install
--no-deps --target DIR timm==0.4.12``); without them these tests are skipped, saying so. Full-size
figures: ``python scripts/official_parity.py`` (see its docstring).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "official_parity.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("official_parity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


official_parity = _load_script()
ORACLE = official_parity.oracle_paths()
needs_oracle = pytest.mark.skipif(isinstance(ORACLE, str), reason=f"no official lang-seg oracle: {ORACLE}")


@needs_oracle
@pytest.mark.parametrize("family", list(official_parity.FAMILIES))
def test_reference_numerics_are_bit_identical_to_the_official_code(family, tmp_path):
    """Every released family (ViT-L/16 LSegNet and LSegNetZS, ResNet-101 LSegRNNetZS, ViT-B/32 LSegNet
    with arch_option 0/1/2), batch 2, a non-square input: reference logits equal the official ones."""
    threads = torch.get_num_threads()
    res = official_parity.compare(
        family, src=ORACLE[0], timm0412=ORACLE[1], tiny=True, size="64x96", batch=2, threads=1,
        modes=("reference", "plain"), workdir=tmp_path,
    )
    assert torch.get_num_threads() == threads  # restored
    ref, plain = res["reference"], res["plain"]
    assert ref["identical"] and ref["max_abs"] == 0.0, ref
    # the default mode (fp32 text tower and similarity, timm's fused attention, folded BatchNorm) is
    # within the reference's fp16 rounding; with random weights the class margins are tiny (the
    # spatial blocks even add the per-pixel max to every class), so its argmax is not a test here
    assert plain["max_abs"] <= 1e-2, plain
    assert not plain["identical"]


def test_missing_oracle_is_explained(monkeypatch, tmp_path):
    monkeypatch.delenv(official_parity.ENV_SRC, raising=False)
    assert "LSEG_OFFICIAL_SRC" in official_parity.oracle_paths(None, None)
    assert "not a lang-seg checkout" in official_parity.oracle_paths(str(tmp_path), str(tmp_path))
    (tmp_path / "modules" / "models").mkdir(parents=True)
    (tmp_path / "modules" / "models" / "lseg_net.py").write_text("")
    assert "no timm 0.4.12" in official_parity.oracle_paths(str(tmp_path), str(tmp_path))

"""README.md's ``bash`` and ``python`` blocks run as written, so the README cannot drift from the code.

The mechanism (also described in the README's Development section): the blocks run in a folder
holding what they name (``photo.jpg``, ``photos/``, ``labels.txt``, ``lseg-demo/`` = a tiny saved
model) with ``LSEG_HOME`` pointing to a weights cache whose ``demo`` entry is that tiny model
(recorded as the downloader records it), so ``lseg.load_model("demo")`` and the commands' default
weights load it without any download. ``lseg`` in a bash block is this interpreter's
``python -m lseg``. A block preceded by ``<!-- not-tested: reason -->`` is skipped; the test lists
the skipped blocks and their reasons, so skipping stays explicit.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_photo
from features.helpers import write_video
from PIL import Image

import lseg
from lseg.weights import sha256_file

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(?:<!--\s*not-tested:\s*(?P<why>.*?)\s*-->\s*\n)?```(?P<lang>bash|python)\n(?P<code>.*?)```",
                    re.DOTALL)


def readme_blocks() -> list[tuple[str, str, str | None, int]]:
    """(language, code, reason it is not tested or None, line) of every bash/python block."""
    text = README.read_text(encoding="utf-8")
    return [(m["lang"], m["code"], m["why"], text.count("\n", 0, m.start("code")) + 1)
            for m in _BLOCK.finditer(text)]


def _sandbox(root: Path) -> dict[str, str]:
    """The files the README names, and the environment that makes ``demo`` the tiny model."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    Image.fromarray(make_photo(72, 96, seed=1)).save(root / "photo.jpg")
    Image.fromarray(make_photo(64, 80, seed=2)).save(photos / "a.jpg")
    Image.fromarray(make_photo(48, 64, seed=3)).save(photos / "b.png")
    (root / "labels.txt").write_text("# labels, one per line\ndog\ngrass\nsky\nother\n", encoding="utf-8")
    write_video(root / "scan.mp4", n_frames=30, rate=10)  # "Features for 3D": 3 s, sampled at 5 frames/s
    torch.manual_seed(0)
    tiny = lseg.create_model("lseg_tiny_test")
    lseg.save_pretrained(tiny, root / "lseg-demo")
    home = root / "lseg-home"
    cached = lseg.save_pretrained(tiny, home / "weights" / "demo" / "lseg")
    weights = Path(cached) / "model.safetensors"
    # As the downloader records a converted file whose release was then deleted to save space.
    record = {"name": "demo", "file": "demo_e200.ckpt", "size": 0, "sha256": "-", "source": "readme test",
              "model": {"size": weights.stat().st_size, "sha256": sha256_file(weights), "config": "lseg_tiny_test"}}
    (home / "weights" / "demo" / "record.json").write_text(json.dumps(record))
    return {**os.environ, "LSEG_HOME": str(home), "LSEG_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
            "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


def test_readme_blocks_run(tmp_path: Path) -> None:
    blocks = readme_blocks()
    skipped = [(line, why) for _, _, why, line in blocks if why is not None]
    tested = [(lang, code, line) for lang, code, why, line in blocks if why is None]
    print(f"README: {len(tested)} blocks run, {len(skipped)} not tested:")
    for line, why in skipped:
        print(f"  line {line}: {why}")
    assert len(tested) >= 5 and all(why for _, why in skipped)
    env = _sandbox(tmp_path)
    # bash blocks: one script (lseg = this interpreter's python -m lseg), stopping at the first failure.
    script = ["set -euo pipefail", f"lseg() {{ {shlex.quote(sys.executable)} -m lseg \"$@\"; }}"]
    for lang, code, line in tested:
        if lang == "bash":
            script += [f"echo '--- README line {line}' >&2", code]
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, check=False,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "seg" / "a_labels.png").is_file() and (tmp_path / "feats" / "a.npy").is_file()
    assert (tmp_path / "lseg-output" / "photo_overlay.png").is_file()
    assert (tmp_path / "query" / "scan" / "000006_labels.png").is_file()
    # python blocks: one session, in order (later blocks use the names earlier ones define).
    session = "\n".join(f"# README line {line}\n{code}" for lang, code, line in tested if lang == "python")
    run = subprocess.run([sys.executable, "-c", session], cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "seg" / "photo_labels.json").is_file() and (tmp_path / "out" / "config.json").is_file()


@pytest.mark.parametrize("text", ["<!-- not-tested: needs X -->\n```bash\nfalse\n```\n", "```python\nx = 1\n```\n"])
def test_block_parser(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "README.md").write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "README", tmp_path / "README.md")
    [(_lang, code, why, _)] = readme_blocks()
    assert (why is None) == ("not-tested" not in text) and code.strip() in ("false", "x = 1")

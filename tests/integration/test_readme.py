"""README.md's ``bash`` and ``python`` blocks run as written, so the README cannot drift from the code.

The mechanism (also described in the README's Development section): the blocks run in a folder
holding what they name (``photo.jpg``, ``photos/``, ``labels.txt``, ``lseg-demo/`` = a tiny saved
model) with ``LSEG_HOME`` pointing to a weights cache whose ``demo`` entry is that tiny model
(recorded as the downloader records it), so ``lseg.load_model("demo")`` and the commands' default
weights load it without any download. ``lseg`` in a bash block is this interpreter's
``python -m lseg``. A block preceded by ``<!-- not-tested: reason -->`` is skipped; the test lists
the skipped blocks and their reasons, so skipping stays explicit.

What the README's "Errors and limits" section promises about inputs, kept (issue 11, class 5):
JPEGs with a corrupt middle are refused, labels equal after NFKC are duplicates, symlinked folders
are followed (once, without loops), an unreadable folder is an error, ``.avif`` files are listed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_photo
from features.helpers import write_video
from hostile_inputs import cli_env, one_error_line, scene
from PIL import Image

import lseg
from lseg.cli import main
from lseg.errors import ImageLoadError, LabelError
from lseg.io import list_images, load_image
from lseg.labels import parse_labels
from lseg.pretrained.released import sha256_file

README = Path(__file__).resolve().parents[2] / "README.md"
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
    (root / "labels.txt").write_text("# labels, one per line\ncat\ntree\nsky\nother\n", encoding="utf-8")
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


MODEL = ["--random-weights", "lseg_tiny_test", "--size", "32", "-q"]


def _jpeg(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("damage", ["zeros", "random", "ff"])
def test_jpeg_with_a_corrupt_middle_is_refused(damage, progressive):
    """Pillow decoded a JPEG whose middle fifth was zeroed without a word (libjpeg's warning
    'Corrupt JPEG data: premature end of data segment' was dropped) into a half-gray picture."""
    data = bytearray(_jpeg(Image.fromarray(scene(480, 640)), quality=90, progressive=progressive))
    a, b = len(data) // 2 - len(data) // 10, len(data) // 2 + len(data) // 10
    rng = np.random.default_rng(0)
    data[a:b] = {"zeros": bytes(b - a), "random": rng.integers(0, 256, b - a, dtype=np.uint8).tobytes(),
                 "ff": b"\xff" * (b - a)}[damage]
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(bytes(data))


def test_intact_jpeg_variants_still_load(tmp_path):
    """No false refusals: progressive, gray, CMYK, 4:4:4 / 4:2:0, restart markers, odd sizes."""
    rgb = Image.fromarray(scene(97, 131))
    variants = {
        "baseline": _jpeg(rgb, quality=90),
        "progressive": _jpeg(rgb, quality=75, progressive=True),
        "gray": _jpeg(rgb.convert("L")),
        "cmyk": _jpeg(rgb.convert("CMYK")),
        "444": _jpeg(rgb, subsampling=0),
        "optimized": _jpeg(rgb, optimize=True),
        "one_pixel": _jpeg(Image.new("RGB", (1, 1), (9, 200, 9))),
    }
    for name, data in variants.items():
        (tmp_path / f"{name}.jpg").write_bytes(data)
        arr = load_image(tmp_path / f"{name}.jpg")
        assert arr.shape[2] == 3, name


def test_segment_refuses_a_corrupt_jpeg_in_a_folder(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = _jpeg(Image.fromarray(scene(240, 320)), quality=90)
    (folder / "good.jpg").write_bytes(good)
    bad = bytearray(good)
    bad[len(bad) // 2 : len(bad) // 2 + 5000] = bytes(5000)  # a lost disk block
    (folder / "bad.jpg").write_bytes(bytes(bad))
    assert main(["segment", str(folder), "-l", "a,b", "-o", str(tmp_path / "out"), *MODEL]) == 1
    err = capsys.readouterr().err
    assert f"failed: {folder / 'bad.jpg'}: cannot load image" in err and "Corrupt JPEG data" in err
    assert not (tmp_path / "out" / "bad_labels.png").exists() and (tmp_path / "out" / "good_labels.png").exists()


@pytest.mark.parametrize(("labels", "why"), [
    ("ﬁsh, fish", "NFKC"),  # the ligature U+FB01
    ("ＤＯＧ, dog", "NFKC"),  # full-width letters
    ("Dog, dog", "ignoring case"),
    ("café, cafe\u0301", ""),  # composed and decomposed é: the same text
])
def test_labels_equal_after_nfkc_are_duplicates(labels, why):
    with pytest.raises(LabelError, match=f"duplicate label .*at position 2.*{why}"):
        parse_labels(labels)


def test_labels_that_clip_reads_differently_are_kept():
    assert parse_labels("fish, fishes, ﬁre, dog") == ["fish", "fishes", "ﬁre", "dog"]


def test_cli_refuses_nfkc_duplicate_labels(tmp_path, capsys):
    Image.fromarray(scene(20, 20)).save(tmp_path / "a.png")
    assert main(["segment", str(tmp_path / "a.png"), "-l", "ＤＯＧ,dog", "-o", str(tmp_path / "out"), *MODEL]) == 2
    assert "duplicate label 'dog' at position 2" in one_error_line(capsys.readouterr().err)


def test_symlinked_sub_folder_is_followed_once_without_loops(tmp_path, capsys):
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    for folder in (root / "real", elsewhere):
        folder.mkdir(parents=True)
        Image.fromarray(scene(20, 24)).save(folder / "x.png")
    (root / "linked").symlink_to(elsewhere)  # outside the folder: followed
    (root / "alias").symlink_to(root / "real")  # inside: listed under its real path only
    (root / "real" / "loop").symlink_to(root)  # a loop
    (elsewhere / "back").symlink_to(elsewhere)  # another loop
    assert [p.relative_to(root).as_posix() for p in list_images(root)] == ["linked/x.png", "real/x.png"]
    out = tmp_path / "out"
    assert main(["segment", str(root), "-l", "a,b", "-o", str(out), *MODEL]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*_labels.png")) == [
        "linked/x_labels.png", "real/x_labels.png"]


def test_unreadable_sub_folder_is_reported_not_skipped(tmp_path):
    """Run without root's permission override (``setpriv``), so that mode 000 is unreadable."""
    root = tmp_path / "photos"
    (root / "private").mkdir(parents=True)
    Image.fromarray(scene(20, 24)).save(root / "a.png")
    Image.fromarray(scene(20, 24)).save(root / "private" / "b.png")
    (root / "private").chmod(0)
    try:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
        if prefix and subprocess.run([*prefix, "true"], check=False).returncode:
            pytest.skip("setpriv cannot drop root's permission override here")
        if subprocess.run([*prefix, "ls", str(root / "private")], capture_output=True, check=False).returncode == 0:
            pytest.skip("the folder is readable despite mode 000 (permission bits not enforced)")
        for command in (["segment", "-l", "a,b"], ["features"]):
            r = subprocess.run([*prefix, sys.executable, "-m", "lseg.cli", *command, str(root), "-o",
                                str(tmp_path / command[0]), *MODEL], env=cli_env(), capture_output=True, text=True,
                               check=False, timeout=240)
            assert r.returncode == 2 and "Traceback" not in r.stderr
            assert [line for line in r.stderr.splitlines() if "error" in line.lower()] == [
                (f"error: cannot read folder '{root / 'private'}': Permission denied; fix its permissions or move it "
                "out of the input folder")]
    finally:
        (root / "private").chmod(0o755)


def test_avif_files_are_listed_and_segmented(tmp_path, capsys):
    root = tmp_path / "photos"
    root.mkdir()
    try:
        Image.fromarray(scene(20, 24)).save(root / "a.avif")
    except (KeyError, OSError) as e:
        pytest.skip(f"this Pillow cannot write AVIF: {e}")
    Image.fromarray(scene(20, 24)).save(root / "b.AVIF")
    assert [p.name for p in list_images(root)] == ["a.avif", "b.AVIF"]
    out = tmp_path / "out"
    assert main(["segment", str(root), "-l", "a,b", "-o", str(out), *MODEL]) == 0
    assert "2 written" in capsys.readouterr().err
    assert (out / "a_labels.png").is_file() and (out / "b_labels.png").is_file()

"""What the README's "Errors and limits" section promises about inputs, kept (issue 11, class 5):
JPEGs with a corrupt middle are refused, labels equal after NFKC are duplicates, symlinked folders
are followed (once, without loops), an unreadable folder is an error, ``.avif`` files are listed."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from hardening.helpers import cli_env, one_error_line, scene
from PIL import Image

from lseg.cli import main
from lseg.errors import ImageLoadError, LabelError
from lseg.io import list_images, load_image
from lseg.labels import parse_labels

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

"""The ``bash``, ``console`` and ``python`` blocks of README.md and of every docs/*.md page run as
written, so the documentation cannot drift from the code (docs/development.md describes this).

Each page runs in its own copy of one folder holding what the pages name (``photo.jpg``,
``photos/``, ``labels.txt``, ``scan.mp4``, ``demo_e200.ckpt`` = a tiny checkpoint laid out as the
released files, ``lseg-demo/`` = that model converted, ``scripts/``) with ``LSEG_HOME`` pointing to a
weights cache whose ``demo`` entry is the same tiny model (recorded as the downloader records it),
so ``lseg.load_model("demo")`` and the commands' default weights load it without any download. The
folder is built once per module; a page's blocks run in page order: its ``python`` blocks in one
session (later blocks use the names earlier ones define), each ``bash`` block as a script that stops
at its first failure, each ``$ command`` of a ``console`` block on its own, its output required to
contain the lines shown under it, in order (``...`` stands for lines left out). ``lseg`` and
``python`` in a shell block are this interpreter's. A block preceded by ``<!-- not-tested: reason -->``
is skipped; the test lists the skipped blocks and their reasons, so skipping stays explicit.

The README stays short (at most 250 lines), every docs page is linked from the README and from
docs/index.md, local links resolve, and no sentence is written twice across README and docs.

What the "Errors and limits" page promises about inputs, kept (issue 11, class 5): JPEGs with a
corrupt middle are refused, labels equal after NFKC are duplicates, symlinked folders are followed
(once, without loops), an unreadable folder is an error, ``.avif`` files are listed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
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

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 250

_BLOCK = re.compile(r"(?:<!--[ \t]*not-tested:(?P<why>[^\n]*?)-->[ \t]*\n)?```(?P<lang>bash|console|python)\n(?P<code>.*?)```",
                    re.DOTALL)

#: Files a page's blocks must have made (so that a block that silently did nothing is caught).
MADE = {
    "README.md": ["lseg-output/photo_overlay.png", "seg/photo_labels.json"],
    "cli.md": ["seg/a_labels.png", "seg/b_labels.json", "seg/a_heat_00_cat.png"],
    "python-api.md": ["out/a_labels.png", "out/b_labels.json"],
    "features-3d.md": ["feats/a.npy", "feats/features.json", "scan_feats/index.json",
                       "query/scan/000006_labels.png", "openscene_feats/scan/000006.pt"],
    "weights.md": ["converted/model.safetensors", "out/config.json", "out/README.md"],
    "training.md": ["runs/toy/model/model.safetensors", "runs/toy/checkpoints/last.ckpt"],
    "datasets.md": ["toy/labels.txt"],
    "gallery.md": ["my-gallery/overlay.png"],
}


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    why: str | None  # why it is not tested; None: it runs
    line: int  # the page line of its first code line


def page_blocks(page: Path) -> list[Block]:
    """Every bash/console/python block of ``page``, in page order."""
    text = page.read_text(encoding="utf-8")
    return [Block(m["lang"], m["code"], None if m["why"] is None else m["why"].strip(),
                  text.count("\n", 0, m.start("code")) + 1) for m in _BLOCK.finditer(text)]


def console_commands(block: Block) -> list[dict]:
    """A console block's commands: ``{"cmd", "expect", "line"}`` (``$ `` lines, continued by a trailing
    backslash; the lines up to the next ``$`` are the output shown, ``...`` lines skipped)."""
    out: list[dict] = []
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"line {block.line + i}: a console block starts with '$ command'"
        cmd, first = lines[i][2:], block.line + i
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd += "\n" + lines[i]
        i += 1
        expect = []
        while i < len(lines) and not lines[i].startswith("$ "):
            if lines[i].strip() not in ("", "..."):
                expect.append(lines[i].rstrip())
            i += 1
        out.append({"cmd": cmd, "expect": expect, "line": first})
    return out


# The program a page's blocks run in (in the page's folder): python blocks exec'd in one namespace,
# compiled with the page's name and line numbers (a traceback points into the page), shell blocks
# and console commands as bash scripts.
_DRIVER = r"""
import json, subprocess, sys
spec = json.load(open(sys.argv[1], encoding="utf-8"))
page, prelude = spec["page"], spec["prelude"]
namespace = {"__name__": "__main__"}

def fail(line, what, output):
    sys.exit(f"{page}, block at line {line}: {what}\n{output[-6000:]}")

for b in spec["blocks"]:
    print(f"--- {page} line {b['line']} ({b['lang']})", file=sys.stderr, flush=True)
    if b["lang"] == "python":
        exec(compile("\n" * (b["line"] - 1) + b["code"], page, "exec"), namespace)
    elif b["lang"] == "bash":
        r = subprocess.run(["bash", "-c", prelude + "set -e\n" + b["code"]], capture_output=True, text=True)
        if r.returncode:
            fail(b["line"], f"exit code {r.returncode}", r.stdout + r.stderr)
    else:
        for c in b["commands"]:
            r = subprocess.run(["bash", "-c", prelude + c["cmd"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
            if r.returncode:
                fail(c["line"], f"`{c['cmd']}` exited with {r.returncode}", r.stdout)
            got = [line.rstrip() for line in r.stdout.splitlines()]
            at = 0
            for want in c["expect"]:
                while at < len(got) and got[at] != want:
                    at += 1
                if at == len(got):
                    fail(c["line"], f"`{c['cmd']}` did not print (in this order) {want!r}", r.stdout)
                at += 1
"""


def _build_folder(root: Path) -> None:
    """The files the pages name (module docstring)."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    Image.fromarray(make_photo(72, 96, seed=1)).save(root / "photo.jpg")
    Image.fromarray(make_photo(64, 80, seed=2)).save(photos / "a.jpg")
    Image.fromarray(make_photo(48, 64, seed=3)).save(photos / "b.png")
    (root / "labels.txt").write_text("# labels, one per line\ncat\ntree\nsky\nother\n", encoding="utf-8")
    write_video(root / "scan.mp4", n_frames=30, rate=10)  # 3 s, sampled at 5 frames/s in features-3d.md
    # demo_e200.ckpt: the tiny network in the released files' layout (Lightning 1.4 container, torch 1.9 zip)
    from refimpl.tiny import tiny_reference
    from safetensors.torch import save_file

    torch.manual_seed(0)
    official = root.parent / "official.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_reference("lseg_tiny_test").state_dict().items()}, str(official))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    subprocess.run([sys.executable, "-m", "refimpl.lightning14", str(official), str(root / "demo_e200.ckpt")],
                   check=True, env=env, timeout=300)
    model = lseg.load_model(root / "demo_e200.ckpt")
    lseg.save_pretrained(model, root / "lseg-demo")
    cached = lseg.save_pretrained(model, root / "lseg-home" / "weights" / "demo" / "lseg")
    weights = Path(cached) / "model.safetensors"
    # As the downloader records a converted file whose release was then deleted to save space.
    record = {"name": "demo", "file": "demo_e200.ckpt", "size": 0, "sha256": "-", "source": "docs test",
              "model": {"size": weights.stat().st_size, "sha256": sha256_file(weights), "config": "lseg_tiny_test"}}
    (root / "lseg-home" / "weights" / "demo" / "record.json").write_text(json.dumps(record))
    (root / "scripts").symlink_to(ROOT / "scripts", target_is_directory=True)


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs") / "folder"
    _build_folder(root)
    return root


def _env(folder: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "LSEG_HOME": str(folder / "lseg-home"), "LSEG_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
            "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_page_blocks_run(page: Path, docs_folder: Path, tmp_path: Path) -> None:
    blocks = page_blocks(page)
    skipped = [b for b in blocks if b.why is not None]
    tested = [b for b in blocks if b.why is None]
    print(f"{_name(page)}: {len(tested)} blocks run, {len(skipped)} not tested:")
    for b in skipped:
        print(f"  line {b.line}: {b.why}")
    assert all(b.why for b in skipped), "a not-tested block needs its reason"
    if page == README:
        assert {b.lang for b in tested} >= {"bash", "python"}, "the README's quick start must run"
    if not tested:
        return
    folder = tmp_path / "folder"
    shutil.copytree(docs_folder, folder, symlinks=True)
    exe = shlex.quote(sys.executable)
    spec = {"page": _name(page),
            "prelude": f"set -uo pipefail\nlseg() {{ {exe} -m lseg \"$@\"; }}\npython() {{ {exe} \"$@\"; }}\n",
            "blocks": [{"lang": b.lang, "code": b.code, "line": b.line,
                        **({"commands": console_commands(b)} if b.lang == "console" else {})} for b in tested]}
    (tmp_path / "blocks.json").write_text(json.dumps(spec), encoding="utf-8")
    run = subprocess.run([sys.executable, "-c", _DRIVER, str(tmp_path / "blocks.json")], cwd=folder,
                         env=_env(folder), capture_output=True, text=True, check=False, timeout=600)
    assert run.returncode == 0, (run.stdout[-3000:] + run.stderr[-6000:])
    missing = [f for f in MADE.get(page.name, []) if not (folder / f).is_file()]
    assert not missing, f"{_name(page)}'s blocks did not make {missing}"


@pytest.mark.parametrize("text", ["<!-- not-tested: needs X -->\n```bash\nfalse\n```\n", "```python\nx = 1\n```\n",
                                  "```console\n$ true\nout\n```\n"])
def test_block_parser(text: str, tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(text)
    [block] = page_blocks(tmp_path / "page.md")
    assert (block.why is None) == ("not-tested" not in text) and block.code.strip() in ("false", "x = 1", "$ true\nout")
    assert block.why in (None, "needs X") and block.line == (3 if block.why else 2)  # the first code line


def test_console_blocks_are_commands_and_their_output():
    block = Block("console", "$ lseg a \\\n  --b\n...\nline one\n$ lseg c\n", None, 10)
    assert console_commands(block) == [{"cmd": "lseg a \\\n  --b", "expect": ["line one"], "line": 10},
                                       {"cmd": "lseg c", "expect": [], "line": 14}]


def test_readme_is_short_and_every_docs_page_is_linked():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES
    readme, index = README.read_text(encoding="utf-8"), (DOCS / "index.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"
        if page.name != "index.md":
            assert f"]({page.name}" in index, f"docs/index.md does not link {page.name}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _prose(page: Path) -> str:
    """A page without its code blocks and HTML comments."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)


def test_local_links_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{_name(page)}: {target}")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", _prose(dest), re.MULTILINE)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{_name(page)}: {target} (no such heading)")
    assert not broken, broken


def test_no_sentence_is_written_twice():
    """README and docs say each thing once (one page may point to another)."""
    seen: dict[str, str] = {}
    twice = []
    for page in PAGES:
        for paragraph in re.split(r"\n\s*\n", _prose(page)):
            for sentence in re.split(r"(?<=[.!?])\s+|\s*\|\s*", " ".join(paragraph.split())):
                key = sentence.strip(" *_").lower()
                if len(key.split()) < 10:
                    continue
                if key in seen and seen[key] != _name(page):
                    twice.append(f"{seen[key]} and {_name(page)}: {sentence[:100]}")
                seen.setdefault(key, _name(page))
    assert not twice, twice


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


def test_every_command_cli_md_gives_a_progress_bar_turns_it_off_as_it_says():
    """cli.md said ``--quiet`` turns every bar off; ``lseg train`` refused ``-q`` (its switch is ``--progress-bar``)."""
    from lseg.cli import build_parser

    text = _prose(DOCS / "cli.md")
    parsers = build_parser()._subparsers._group_actions[0].choices
    for command in re.findall(r"`([a-z ]+)`", re.search(r"Progress bars \(([^)]*)\)", text).group(1)):
        parser = parsers[command.split()[0]]
        if " " in command:
            parser = parser._subparsers._group_actions[0].choices[command.split()[1]]
        assert "--quiet" in parser._option_string_actions or (
            f"`lseg {command}`: `--progress-bar false`" in text and "--progress-bar" in parser._option_string_actions), command


def test_what_each_batch_summary_counts_is_what_cli_md_says():
    """cli.md said every summary counts images or frames; ``store reduce`` counts the store's shards, its units."""
    from lseg.features.derived import ReduceWriter

    text = _prose(DOCS / "cli.md")
    counted = re.search(r"The summary counts images or frames( \(`store reduce`: (\w+)\))?", text)
    assert counted and counted.group(2) == ReduceWriter.unit_name + "s"

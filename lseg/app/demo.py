"""Gradio web demo (``lseg demo``): :func:`build_demo` returns the ``gr.Blocks`` without launching it;
:class:`SegmentDemo` holds the logic and runs without Gradio."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from lseg.app.options import DemoOptions, check_port_free
from lseg.errors import ImageLoadError, LabelError
from lseg.io import file_fragment, load_image
from lseg.labels import parse_labels
from lseg.viz import hex_colors, save_label_map

if TYPE_CHECKING:
    import gradio as gr

    from lseg.inference.predictor import LSegPredictor

DEFAULT_LABELS = "dog, grass, sky, other"
EXAMPLE_LABELS = [
    "dog, grass, sky, other",
    "person, car, road, building, tree, sky, other",
    "cat, sofa, floor, wall, window, other",
]
#: Opacity of the colour masks over the photo (Gradio uses the mask value as alpha).
MASK_OPACITY = 0.6
#: Most recent label-map files kept on disk (older ones are deleted; Gradio keeps its own copies).
_KEEP_FILES = 32


@dataclass
class DemoOutput:
    """One segmentation as the demo shows it.

    Attributes:
        ok: ``False`` if the input was refused (``status`` says why).
        status: Markdown status line.
        image: (h, w, 3) uint8 display image (downscaled to ``max_display_side``).
        masks: ``(mask, label)`` per label present: (h, w) float32, :data:`MASK_OPACITY` where the
            label wins, else 0.
        color_map: ``{label: "#rrggbb"}`` for every label.
        label_png: full-resolution label map PNG (pixel value = label index).
        shares: fraction of pixels per label.
    """

    ok: bool
    status: str
    image: np.ndarray | None = None
    masks: list[tuple[np.ndarray, str]] = field(default_factory=list)
    color_map: dict[str, str] = field(default_factory=dict)
    label_png: Path | None = None
    shares: dict[str, float] = field(default_factory=dict)


class SegmentDemo:
    """The demo's logic: refuse inputs over the limits with a message, segment, prepare the outputs.
    Label-map PNGs go to ``out_dir`` (default: a temporary folder removed with the demo)."""

    def __init__(self, predictor: LSegPredictor, *, max_upload_mb: float = DemoOptions.max_upload_mb,
                 max_labels: int = DemoOptions.max_labels, max_pixels: int = 40_000_000,
                 max_display_side: int = 1024, out_dir: str | os.PathLike[str] | None = None) -> None:
        DemoOptions(max_upload_mb=max_upload_mb, max_labels=max_labels)  # the checks of `lseg demo`
        self.predictor, self.max_upload_mb, self.max_labels = predictor, max_upload_mb, max_labels
        self.max_pixels, self.max_display_side = max_pixels, max_display_side
        self.out_dir = Path(tempfile.mkdtemp(prefix="lseg-demo-") if out_dir is None else out_dir)
        if out_dir is None:  # removed with this object (or at exit), quietly: servers and tests leave none behind
            weakref.finalize(self, shutil.rmtree, self.out_dir, ignore_errors=True)
        self._recent: deque[Path] = deque()

    def run(self, image: str | os.PathLike[str] | None, labels: str | None) -> DemoOutput:
        """Segment the image file ``image`` with the comma-separated ``labels``."""
        if image is None:
            return DemoOutput(False, "Upload an image first.")
        path = Path(image)
        try:
            size_mb = path.stat().st_size / 2**20
        except OSError as e:
            return DemoOutput(False, f"Cannot read the uploaded file: {e.strerror or e}.")
        if size_mb > self.max_upload_mb:
            return DemoOutput(False, f"The image is {size_mb:.1f} MB; this demo accepts files up to "
                                     f"{self.max_upload_mb:g} MB. Use a smaller image.")
        try:
            label_list = parse_labels(labels or "")
        except LabelError as e:
            return DemoOutput(False, f"Bad labels: {e}")
        if len(label_list) > self.max_labels:
            return DemoOutput(False, f"{len(label_list)} labels given; this demo accepts at most "
                                     f"{self.max_labels}.")
        try:
            rgb = load_image(path, max_pixels=self.max_pixels)
        except ImageLoadError as e:
            # the upload's path is the server's temp file: the web user sees its name only
            return DemoOutput(False, f"Cannot use this image: {_hide_folder(str(e), path)}")
        start = time.perf_counter()
        try:
            result = self.predictor.segment(rgb, label_list)
        except LabelError as e:  # the tokenizer's checks: labels CLIP reads as one text
            return DemoOutput(False, f"Bad labels: {e}")
        seconds = time.perf_counter() - start
        label_map = result.label_map
        shares = result.scores()
        color_map = dict(zip(label_list, hex_colors(len(label_list)), strict=True))
        disp_image, disp_map = self._display(rgb, label_map)
        masks = [
            ((disp_map == i).astype(np.float32) * np.float32(MASK_OPACITY), lb)
            for i, lb in enumerate(label_list) if shares[lb] > 0
        ]
        png = self._write_label_png(label_map, label_list, path.stem)
        ranked = sorted(shares.items(), key=lambda kv: -kv[1])
        listing = " · ".join(f"{lb} {share:.0%}" for lb, share in ranked if share > 0)
        h, w = label_map.shape
        status = f"Segmented a {w}x{h} image into {len(label_list)} labels in {seconds:.2f} s: {listing}"
        return DemoOutput(True, status, disp_image, masks, color_map, png, shares)

    def _display(self, rgb: np.ndarray, label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = label_map.shape
        scale = self.max_display_side / max(h, w)
        if scale >= 1:
            return rgb, label_map
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        # nearest-neighbour: class ids must not be blended
        ys = np.minimum((np.arange(size[1]) + 0.5) * h / size[1], h - 1).astype(np.int64)
        xs = np.minimum((np.arange(size[0]) + 0.5) * w / size[0], w - 1).astype(np.int64)
        return small, label_map[ys[:, None], xs[None, :]]

    def _write_label_png(self, label_map: np.ndarray, labels: list[str], stem: str) -> Path:
        folder = self.out_dir / uuid.uuid4().hex[:12]
        target = save_label_map(folder / f"{file_fragment(stem, 80, 'image')}_labels.png", label_map, labels)
        self._recent.append(folder)
        while len(self._recent) > _KEEP_FILES:
            shutil.rmtree(self._recent.popleft(), ignore_errors=True)
        return target

    def callback(self, image: str | None, labels: str | None) -> tuple[dict[str, Any], str | None, str]:
        """The Gradio event handler: (annotated image update, label-map file, status Markdown)."""
        import gradio as gr

        out = self.run(image, labels)
        if not out.ok:  # the same word in the toast and the status line; the toast goes by itself
            gr.Warning(out.status, title="Error", duration=TOAST_SECONDS)
            return gr.update(value=None), None, f"**Error:** {out.status}"
        annotated = (out.image, out.masks)
        return gr.update(value=annotated, color_map=out.color_map), str(out.label_png), out.status


#: How long an error toast stays (the status line keeps the message until the next run).
TOAST_SECONDS = 6


def _hide_folder(message: str, path: Path) -> str:
    """``message`` with every spelling of ``path`` (as given, absolute, resolved) shown as its name."""
    spellings = {str(path), str(path.absolute())}
    with contextlib.suppress(OSError):
        spellings.add(str(path.resolve()))
    for spelling in sorted(spellings, key=len, reverse=True):
        message = message.replace(spelling, path.name)
    return message


def build_demo(predictor: LSegPredictor, *, max_upload_mb: float = DemoOptions.max_upload_mb,
               max_labels: int = DemoOptions.max_labels, max_pixels: int = 40_000_000,
               banner: str | None = None,
               title: str = "LSeg: language-driven semantic segmentation") -> gr.Blocks:
    """The demo as a ``gr.Blocks``, not launched; ``banner`` is shown above the inputs."""
    import gradio as gr

    app = SegmentDemo(predictor, max_upload_mb=max_upload_mb, max_labels=max_labels, max_pixels=max_pixels)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\nUpload an image, list the labels to look for (comma-separated; include a "
                    "catch-all such as `other`), and press **Segment**. Every pixel gets the label whose "
                    "text embedding is closest to its pixel embedding.")
        if banner:
            gr.Markdown(f"> **{banner}**", elem_id="lseg-banner")
        with gr.Row():
            with gr.Column():
                image = lenient_upload(gr.Image(label="Image", type="filepath", image_mode=None,
                                                sources=["upload", "clipboard"], elem_id="lseg-image"))
                labels = gr.Textbox(label="Labels", value=DEFAULT_LABELS, lines=2, max_lines=6,
                                    placeholder="dog, grass, sky, other", elem_id="lseg-labels")
                button = gr.Button("Segment", variant="primary", elem_id="lseg-segment")
                gr.Examples(examples=[[lb] for lb in EXAMPLE_LABELS], inputs=[labels], label="Label sets")
            with gr.Column():
                annotated = gr.AnnotatedImage(label="Segmentation", show_legend=True, format="png",
                                              elem_id="lseg-result")
                status = gr.Markdown("", elem_id="lseg-status")
                label_file = gr.File(label="Label map (PNG; pixel value = label index)", elem_id="lseg-file")
        inputs = [image, labels]
        outputs = [annotated, label_file, status]
        button.click(app.callback, inputs=inputs, outputs=outputs, api_name="segment")
        labels.submit(app.callback, inputs=inputs, outputs=outputs)
    demo.queue(default_concurrency_limit=1)  # one model, CPU-bound: one request at a time
    return demo


def lenient_upload(component: Any) -> Any:
    """Make a ``gr.Image`` hand any upload to the demo, which says what is wrong with one it cannot read
    (Gradio shows a bare "Error"). Patched on the instance: a subclass makes Gradio write a ``.pyi`` stub."""
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except Exception:  # noqa: BLE001 - any undecodable upload: SegmentDemo.run reports it
            return getattr(payload, "path", None)

    component.preprocess = preprocess
    return component


#: Frontend strings Gradio leaves untranslated (its status tracker shows the raw key).
_I18N = {"en": {"common.complete": "Complete", "common.error": "Error"}}


def launch_demo(demo: gr.Blocks, *, host: str = DemoOptions.host, port: int | None = DemoOptions.port,
                max_upload_mb: float = DemoOptions.max_upload_mb, **kwargs: Any) -> Any:
    """``demo.launch`` bound to ``host`` with Gradio's upload limit set (``port`` 0: any free one);
    blocks unless ``prevent_thread_lock``."""
    import gradio as gr

    DemoOptions(host=host, port=port or 0, max_upload_mb=max_upload_mb)  # the checks of `lseg demo`
    port = None if port is None else check_port_free(host, port)  # 0: a free one (Gradio takes 0 literally)
    # quiet: Gradio's banner suggests `share=True`, which a CLI user cannot set; the address is printed
    kwargs.setdefault("quiet", True)
    kwargs.setdefault("i18n", gr.I18n(**_I18N))
    block = not kwargs.pop("prevent_thread_lock", False)
    result = demo.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb",
                         prevent_thread_lock=True, **kwargs)
    print(f"lseg demo: serving on {demo.local_url} (Ctrl+C to stop)", flush=True)
    if block:
        demo.block_thread()
    return result

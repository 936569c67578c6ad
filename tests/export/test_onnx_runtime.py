"""lseg.export.onnx_runtime: runs an export without torch (the runtime's behaviour is tested against
the torch predictor in test_onnx.py, next to the export fixtures)."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import lseg.export.onnx_runtime as rt\n"
        "assert rt.OnnxPredictor and rt.OnnxSegmentation\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

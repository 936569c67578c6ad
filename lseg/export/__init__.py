"""Deployment exports of LSeg (ONNX). Needs the ``[export]`` extra: ``pip install lseg[export]``.

See :mod:`lseg.export.onnx` (the exporter, needs torch) and :mod:`lseg.export.onnx_runtime` (runs an
export with onnxruntime and numpy, without torch).
"""

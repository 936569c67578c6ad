"""Deployment exports of LSeg (ONNX). Needs the ``[export]`` extra: ``pip install lseg[export]``.

See :mod:`lseg.export.onnx`.
"""

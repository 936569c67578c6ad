"""ONNX export of LSeg (:mod:`.onnx`, needs torch and ``lseg[export]``) and running it with onnxruntime
and numpy (:mod:`.onnx_runtime`)."""

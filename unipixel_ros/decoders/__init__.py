"""SAM 2 mask-decoder backends (torch, onnxruntime, TensorRT) behind one interface.

Submodules are imported on demand: onnxruntime and tensorrt are optional.
"""

# The backend names, importable without torch (the node validates its parameters with them).
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
DECODER_PRECISIONS: tuple[str, ...] = ("fp32", "fp16")

"""SAM 2 mask-decoder backends (torch, onnxruntime, TensorRT) behind one interface.

Submodules are imported on demand: onnxruntime and tensorrt are optional.
"""

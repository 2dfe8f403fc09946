"""Command-line tools for the mask decoder: ONNX export, TensorRT engine build, parity check.

Run from the repository root: ``python -m export.export_onnx --help`` (likewise
``export.build_engine`` and ``export.parity``).
"""

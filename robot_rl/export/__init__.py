"""ONNX export (``robot-rl export``, needs torch and onnx) and the torch-free runtime that loads it.

- :mod:`robot_rl.export.manifest`: the deployment manifest carried in the model's ``metadata_props``.
- :mod:`robot_rl.export.runtime`: :class:`~robot_rl.export.runtime.OnnxPolicy`, onnxruntime + numpy only.
- :mod:`robot_rl.export.onnx_export`: the graph builder, the parity check and the command (torch, onnx).

This package's ``__init__`` imports nothing heavy: the onboard deploy path imports the manifest and the
runtime, never the exporter.
"""

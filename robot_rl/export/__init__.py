"""ONNX export (``robot-rl export``, needs torch and onnx) and the torch-free runtime that loads it.

- :mod:`robot_rl.export.manifest`: the deployment manifest carried in the model's ``metadata_props``.
- :mod:`robot_rl.export.runtime`: :class:`~robot_rl.export.runtime.OnnxPolicy`, onnxruntime + numpy only.
- :mod:`robot_rl.export.graph`: the ONNX graph of a policy (onnx).
- :mod:`robot_rl.export.onnx_export`: ``robot-rl export``: sources, manifest, parity check (torch, onnx).
- :mod:`robot_rl.export.commands`: the ``Export`` command dataclass (light imports).

This package's ``__init__`` imports nothing heavy: the onboard deploy path imports the manifest and the
runtime, never the exporter.
"""

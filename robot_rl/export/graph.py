"""The ONNX graph of a ``tanh_gaussian_mlp`` policy (robot_rl.nets.numpy_policy), built with ``onnx.helper``.

    obs (1, D) float32
      -> Sub(obs_mean) -> Mul(1 / obs_std)                     the training normaliser
      -> [Gemm(W_i, b_i, transB=1) -> activation] per hidden layer
      -> Gemm(W_mean, b_mean, transB=1) -> Tanh               deterministic mean action in [-1, 1]
      -> Mul(action_scale_rad) -> Add(default_joint_pos_rad)  joint position targets, rad
    -> actions (1, A) float32

The log-std head is not in the graph: a deployed policy acts with its mean. The manifest
(robot_rl.export.manifest) is written into ``metadata_props``. Needs the ``onnx`` package (export time
only); the onboard runtime reads the file with onnxruntime alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from robot_rl.bus.messages import PolicyWeights
from robot_rl.export.manifest import DeployManifest
from robot_rl.export.runtime import INPUT_NAME, OUTPUT_NAME
from robot_rl.nets.numpy_policy import PolicyArch

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(11, 22)
"""Gemm, Tanh, Relu, Elu, Sigmoid, Mul, Add, Sub: unchanged in meaning over these opsets."""


def _activation(kind: str, x: str, out: str, i: int) -> list[onnx.NodeProto]:
    if kind == "relu":
        return [helper.make_node("Relu", [x], [out], name=f"relu_{i}")]
    if kind == "tanh":
        return [helper.make_node("Tanh", [x], [out], name=f"tanh_{i}")]
    if kind == "elu":
        return [helper.make_node("Elu", [x], [out], name=f"elu_{i}", alpha=1.0)]
    if kind == "silu":
        sig = f"{x}_sigmoid"
        return [
            helper.make_node("Sigmoid", [x], [sig], name=f"sigmoid_{i}"),
            helper.make_node("Mul", [x, sig], [out], name=f"silu_{i}"),
        ]
    raise ValueError(f"activation {kind!r} has no ONNX form here")


def build_model(
    weights: PolicyWeights, manifest: DeployManifest, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """The model of the module docstring for ``weights`` with ``manifest`` in its metadata.

    ValueError if the policy's sizes disagree with the manifest or the opset is not supported.
    """
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset {opset}: supported are {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1}")
    arch = PolicyArch.from_json(weights.arch)
    if arch.obs_dim != manifest.obs_dim or arch.act_dim != manifest.act_dim:
        raise ValueError(
            f"policy is {arch.obs_dim} -> {arch.act_dim}, the manifest describes "
            f"{manifest.obs_dim} observations -> {manifest.act_dim} joints"
        )
    f32 = np.float32
    inits = [
        numpy_helper.from_array(np.asarray(weights.obs_mean, f32).reshape(1, -1), "obs_mean"),
        numpy_helper.from_array(
            (1.0 / np.asarray(weights.obs_std, f32)).astype(f32).reshape(1, -1), "obs_inv_std"
        ),
        numpy_helper.from_array(
            np.full((1, arch.act_dim), manifest.action_scale_rad, f32), "action_scale_rad"
        ),
        numpy_helper.from_array(
            np.asarray(manifest.default_joint_pos_rad, f32).reshape(1, -1), "default_joint_pos_rad"
        ),
    ]
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "obs_mean"], ["obs_centred"], name="normalise_sub"),
        helper.make_node("Mul", ["obs_centred", "obs_inv_std"], ["x_0"], name="normalise_mul"),
    ]
    x = "x_0"
    for i, name in enumerate(arch.layer_names):
        inits += [
            numpy_helper.from_array(np.asarray(weights.params[f"{name}.weight"], f32), f"{name}.weight"),
            numpy_helper.from_array(np.asarray(weights.params[f"{name}.bias"], f32), f"{name}.bias"),
        ]
        pre, out = f"pre_{i + 1}", f"x_{i + 1}"
        nodes.append(
            helper.make_node("Gemm", [x, f"{name}.weight", f"{name}.bias"], [pre], name=f"gemm_{i}", transB=1)
        )
        nodes += _activation(arch.activation, pre, out, i)
        x = out
    m = arch.mean_name
    inits += [
        numpy_helper.from_array(np.asarray(weights.params[f"{m}.weight"], f32), f"{m}.weight"),
        numpy_helper.from_array(np.asarray(weights.params[f"{m}.bias"], f32), f"{m}.bias"),
    ]
    nodes += [
        helper.make_node("Gemm", [x, f"{m}.weight", f"{m}.bias"], ["mean"], name="gemm_mean", transB=1),
        helper.make_node("Tanh", ["mean"], ["action_unit"], name="squash"),
        helper.make_node("Mul", ["action_unit", "action_scale_rad"], ["action_rad"], name="scale"),
        helper.make_node("Add", ["action_rad", "default_joint_pos_rad"], [OUTPUT_NAME], name="offset"),
    ]
    graph = helper.make_graph(
        nodes,
        "robot_rl_policy",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, arch.obs_dim])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, arch.act_dim])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="robot-rl",
        producer_version=manifest.software_version,
        doc_string=(
            f"{manifest.algo} policy for {manifest.robot}: obs ({arch.obs_dim}) -> joint position targets "
            f"({arch.act_dim}, rad); deterministic mean action; manifest in metadata_props"
        ),
    )
    model.ir_version = min(model.ir_version, 8 if opset <= 17 else 9)  # loadable by older onnxruntime builds
    helper.set_model_props(model, manifest.to_metadata_props())
    return model

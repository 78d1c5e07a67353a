"""LightGBM binary model -> ONNX graph with Platt calibration inside, and the native twin.

Graph (opset 15 + ai.onnx.ml 1)::

    input float[N, k] ─► TreeEnsembleRegressor (the booster's trees, raw margin, SUM)
                      ─► Mul(a) ─► Add(b) ─► Sigmoid ─► Reshape[-1] ─► probability float[N]

The trees are copied from onnxmltools' TreeEnsembleClassifier conversion (binary: one weight per
leaf, class 0), re-emitted as a regressor without the LOGISTIC post-transform, so the calibrated
probability is ``sigmoid(a · margin + b)`` — Platt scaling on the margin, the same formula
:func:`native_predict` applies to ``booster.predict(raw_score=True)``. No ZipMap, no label output,
one float tensor out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

INPUT_NAME = "input"
OUTPUT_NAME = "probability"
TARGET_OPSET = 15

F64 = npt.NDArray[np.float64]

_TREE_ATTRS = ("nodes_falsenodeids", "nodes_featureids", "nodes_hitrates",
               "nodes_missing_value_tracks_true", "nodes_modes", "nodes_nodeids", "nodes_treeids",
               "nodes_truenodeids", "nodes_values")


def to_onnx(booster: Any, n_features: int, a: float, b: float, *, name: str,
            doc: str = "") -> bytes:
    """Serialised ONNX model computing ``sigmoid(a · margin + b)`` for a binary LightGBM booster."""
    import onnx
    import onnxmltools
    from onnx import TensorProto, helper
    from onnxmltools.convert.common.data_types import FloatTensorType

    converted = onnxmltools.convert_lightgbm(
        booster, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False, target_opset=TARGET_OPSET)
    trees = [n for n in converted.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(trees) != 1:
        ops = [n.op_type for n in converted.graph.node]
        raise RuntimeError(f"expected one TreeEnsembleClassifier, got {ops}")
    attrs = {at.name: helper.get_attribute_value(at) for at in trees[0].attribute}
    if set(attrs.get("class_ids", [])) - {0}:
        raise RuntimeError("only binary boosters (one leaf weight per tree) are supported")
    regressor = helper.make_node(
        "TreeEnsembleRegressor", [INPUT_NAME], ["margin"], domain="ai.onnx.ml",
        n_targets=1, aggregate_function="SUM", post_transform="NONE",
        base_values=[float(v) for v in attrs.get("base_values", [0.0])],
        target_ids=list(attrs["class_ids"]), target_nodeids=list(attrs["class_nodeids"]),
        target_treeids=list(attrs["class_treeids"]),
        target_weights=[float(w) for w in attrs["class_weights"]],
        **{k: attrs[k] for k in _TREE_ATTRS if k in attrs})
    nodes = [
        regressor,
        helper.make_node("Mul", ["margin", "platt_a"], ["scaled"]),
        helper.make_node("Add", ["scaled", "platt_b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p2d"]),
        helper.make_node("Reshape", ["p2d", "flat_shape"], [OUTPUT_NAME]),
    ]
    inits = [
        helper.make_tensor("platt_a", TensorProto.FLOAT, [], [a]),
        helper.make_tensor("platt_b", TensorProto.FLOAT, [], [b]),
        helper.make_tensor("flat_shape", TensorProto.INT64, [1], [-1]),
    ]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None])], initializer=inits)
    model = helper.make_model(graph, producer_name="dsp.offline.training", doc_string=doc,
                              opset_imports=[helper.make_opsetid("", TARGET_OPSET),
                                             helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def snap_thresholds(booster: Any) -> Any:
    """The same booster with every split threshold rounded *down* to a float32 value.

    ONNX tree ensembles compare float32 inputs with float32 thresholds; LightGBM compares with
    doubles. For a float32 input ``x`` and double threshold ``t``, ``x <= t`` iff
    ``x <= floor32(t)`` (the largest float32 not above ``t``), so snapping leaves every prediction
    on float32 inputs unchanged while making the float32 cast in the converter exact — the
    converter's round-to-nearest would otherwise flip branches for inputs between the two.
    """
    import lightgbm as lgb

    # tree_sizes= gives each tree's byte length; the rewritten text changes them, so drop it
    # (LightGBM then parses the trees sequentially).
    lines = [ln for ln in booster.model_to_string().split("\n") if not ln.startswith("tree_sizes=")]
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            values = np.array(line[len("threshold="):].split(), dtype=np.float64)
            lines[i] = "threshold=" + " ".join(repr(float(v)) for v in _floor32(values))
        elif line.startswith("decision_type=") and any(int(v) & 1 for v in line.split("=")[1].split()):
            raise ValueError("categorical splits are not supported by snap_thresholds")
    return lgb.Booster(model_str="\n".join(lines))


def _floor32(values: F64) -> npt.NDArray[np.float32]:
    nearest = values.astype(np.float32)
    above = nearest.astype(np.float64) > values
    out: npt.NDArray[np.float32] = np.where(
        above, np.nextafter(nearest, np.float32(-np.inf)), nearest).astype(np.float32)
    return out


def native_predict(booster: Any, x: npt.ArrayLike, a: float, b: float) -> F64:
    """The native twin of the ONNX graph: Platt on LightGBM's raw margin (float32 inputs)."""
    xx = np.asarray(x, dtype=np.float32).astype(np.float64)
    margin = np.asarray(booster.predict(xx, raw_score=True), dtype=np.float64)
    out: F64 = 1.0 / (1.0 + np.exp(-(a * margin + b)))
    return out


def fit_platt(margin: npt.ArrayLike, y: npt.ArrayLike) -> tuple[float, float]:
    """(a, b) maximising the likelihood of ``y ~ sigmoid(a · margin + b)`` (unregularised)."""
    from sklearn.linear_model import LogisticRegression

    m = np.asarray(margin, dtype=np.float64).reshape(-1, 1)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(m, np.asarray(y))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])

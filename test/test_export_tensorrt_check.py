"""The static TensorRT-compatibility check names the op and node a TensorRT build would fail on."""
import onnx
import pytest
from onnx import TensorProto, helper

from unipixel_ros.decoders.onnx_checks import (TensorRTIncompatibleGraph, check_tensorrt_compatible,
                                               tensorrt_findings)


def make_model(nodes, inputs, outputs, initializers=(), opset=18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def float_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_onehot_is_rejected_with_op_and_node_name():
    """What torch's repeat_interleave used to export: a OneHot whose depth comes from a shape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape_of_x"),
        helper.make_node("Gather", ["shape", "zero"], ["depth"], name="batch_size", axis=0),
        helper.make_node("OneHot", ["indices", "depth", "values"], ["onehot"], name="repeat_interleave_onehot"),
    ]
    model = make_model(
        nodes,
        [float_input("x", ["K", 4]), helper.make_tensor_value_info("indices", TensorProto.INT64, ["K"])],
        [float_input("onehot", ["K", "depth"])],
        [helper.make_tensor("zero", TensorProto.INT64, [], [0]),
         helper.make_tensor("values", TensorProto.FLOAT, [2], [0.0, 1.0])])
    with pytest.raises(TensorRTIncompatibleGraph, match=r"OneHot node 'repeat_interleave_onehot'"):
        check_tensorrt_compatible(model)


def test_tile_with_runtime_repeats_is_rejected_but_constant_repeats_pass():
    def tile_model(repeats_from_shape: bool):
        nodes = [helper.make_node("Tile", ["x", "repeats"], ["y"], name="tile_x")]
        inits = []
        if repeats_from_shape:
            nodes.insert(0, helper.make_node("Shape", ["x"], ["repeats"], name="shape_as_repeats"))
        else:
            inits = [helper.make_tensor("repeats", TensorProto.INT64, [2], [3, 1])]
        return make_model(nodes, [float_input("x", [2, 4])], [float_input("y", [6, 4])], inits)

    with pytest.raises(TensorRTIncompatibleGraph, match=r"Tile node 'tile_x'"):
        check_tensorrt_compatible(tile_model(repeats_from_shape=True))
    check_tensorrt_compatible(tile_model(repeats_from_shape=False))


def test_boolean_input_old_opset_and_unsupported_op_are_all_listed():
    nodes = [helper.make_node("Unique", ["x"], ["y"], name="unique_x"),
             helper.make_node("Not", ["flag"], ["not_flag"], name="negate")]
    model = make_model(nodes, [float_input("x", [4]), helper.make_tensor_value_info("flag", TensorProto.BOOL, [1])],
                       [float_input("y", ["N"]), helper.make_tensor_value_info("not_flag", TensorProto.BOOL, [1])],
                       opset=16)
    found = {(f.op, f.node) for f in tensorrt_findings(model)}
    assert found == {("opset", "<model>"), ("input", "flag"), ("Unique", "unique_x")}
    with pytest.raises(TensorRTIncompatibleGraph) as err:
        check_tensorrt_compatible(model)
    assert "unique_x" in str(err.value) and "flag" in str(err.value) and "opset 16" in str(err.value)


def test_nodes_inside_subgraphs_are_checked():
    body = helper.make_graph([helper.make_node("NonZero", ["x"], ["nz"], name="inner_nonzero")], "then",
                             [], [helper.make_tensor_value_info("nz", TensorProto.INT64, [1, "N"])])
    other = helper.make_graph([helper.make_node("Shape", ["x"], ["s"], name="inner_shape")], "else",
                              [], [helper.make_tensor_value_info("s", TensorProto.INT64, [1])])
    node = helper.make_node("If", ["c"], ["out"], name="branch", then_branch=body, else_branch=other)
    model = make_model([node], [float_input("x", [4]), float_input("c_unused", [1])],
                       [helper.make_tensor_value_info("out", TensorProto.INT64, [1, "N"])],
                       [helper.make_tensor("c", TensorProto.BOOL, [], [True])])
    assert [(f.op, f.node) for f in tensorrt_findings(model)] == [("NonZero", "inner_nonzero")]


def test_clean_graph_passes():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [float_input("x", [2])],
                       [float_input("y", [2])])
    assert tensorrt_findings(model) == []

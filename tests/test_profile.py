"""bench/profile.py: the trace is read by part and kind, and a real run adds up."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.profile import classify, op_type_of  # noqa: E402


@pytest.mark.parametrize("name, op, expected", [
    ("layer_1/t7/MatMul", "_MklMatMul", ("forward", "recurrence", "matmul")),
    ("layer_0/t12/split", "Split", ("forward", "recurrence", "copy")),
    ("layer_0/t3/Sigmoid_2", "Sigmoid", ("forward", "recurrence", "element-wise")),
    ("gradients/layer_1/t9/IdentityN_grad/MatMul", "_MklMatMul",
     ("backward", "recurrence", "matmul")),
    ("gradients/recurrent_weights_1/MatMul", "_MklMatMul",
     ("backward", "recurrence", "matmul")),
    ("layer_0/project/MatMul", "_MklFusedMatMul", ("forward", "input projection", "matmul")),
    ("layer_1/project_3/MatMul", "_MklMatMul", ("forward", "input projection", "matmul")),
    ("gradients/layer_1/project/MatMul_grad/MatMul_1", "_MklMatMul",
     ("backward", "input projection", "matmul")),
    ("softmax/MatMul", "_MklMatMul", ("forward", "softmax", "matmul")),
    ("gradients/softmax/xent_grad/TensorScatterSub", "TensorScatterSub",
     ("backward", "softmax", "copy")),
    ("sampled/sampled_softmax_loss/MatMul", "MatMul", ("forward", "softmax", "matmul")),
    ("embedding/embedding_lookup", "ResourceGather", ("forward", "embedding", "copy")),
    ("gradients/AddN_12", "AddN", ("backward", "gradient sums", "sum")),
    ("Adam/update_softmax_w/ResourceApplyAdam", "ResourceApplyAdam",
     ("update", "optimizer", "element-wise")),
    ("clip_by_global_norm/mul_1", "Mul", ("update", "optimizer", "element-wise")),
    ("outputs/transpose", "_MklTranspose", ("forward", "outputs", "copy")),
    ("_SOURCE", "NoOp", ("forward", "other", "bookkeeping")),
])
def test_a_traced_op_is_counted_by_its_part_and_kind(name, op, expected):
    assert classify(name, op) == expected


def test_the_op_type_is_read_from_the_trace_label():
    label = "[mklcpu 0.1MB 0.1MB] layer_0/t8/split = Split(layer_1/t15/split/split_dim, x)"
    assert op_type_of(label, "layer_0/t8/split") == "Split"
    assert op_type_of("weird", "layer_0/t8/split") == "?"


@pytest.mark.slow
def test_a_profile_of_a_small_model_adds_up_to_the_step():
    """A real run on the seed config: the rows name the recurrence, the softmax and the
    update, their shares add up to (nearly) all the op time, and the op time is at
    least the traced step's wall time (ops overlap, they are never missing)."""
    proc = subprocess.run([sys.executable, "bench/profile.py", "--config", "seed",
                           "--vocab", "300", "--steps", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    parts = {r["part"] for r in out["rows"]}
    assert {"recurrence", "softmax", "optimizer", "input projection"} <= parts
    assert 0.95 <= sum(r["share"] for r in out["rows"]) <= 1.0 + 1e-9
    assert out["op_ms"] >= 0.5 * out["traced_step_ms"] > 0
    rec = [r for r in out["rows"] if r["part"] == "recurrence" and r["kind"] == "matmul"][0]
    assert rec["forward_ms"] > 0 and rec["backward_ms"] > 0
    assert "step: untraced" in proc.stdout


@pytest.mark.parametrize("argv, flag", [(["--steps", "0"], "--steps"),
                                        (["--rnn_impl", "fast"], "--rnn_impl"),
                                        (["--rnncell", "tcn"], "--rnncell")])
def test_profile_refuses_bad_input_in_one_line(argv, flag):
    proc = subprocess.run([sys.executable, "bench/profile.py", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and flag in proc.stderr

"""Where one training step's time goes: TensorFlow's own per-op trace of a training step
(RunOptions FULL_TRACE), added up by part of the model and kind of op.

    python bench/profile.py --config large --vocab 2000
    python bench/profile.py --config base --steps 10 --trace /tmp/base.json   # chrome://tracing

The model is bench/speed.py's (the same configs and Model), on random ids of the given
vocabulary size (the time of a step does not depend on the ids).  Parts come from the
graph's name scopes (seq2seq_rnn.py: embedding, layer_<i>/project, layer_<i>/t<t>,
outputs, softmax, gradients/..., clip + Adam); kinds from the op type: matmul,
element-wise, copy (split, concat, stack, slice, transpose, gather), sum (AddN).
Grappler rewrites the graph before it runs (oneDNN's _MklMatMul, fused ops); the trace is
of the graph that ran, so a rewritten op keeps its scope and is counted where it belongs.

Op time is the sum of the ops' own durations per step: with two cores and ops running
side by side it can exceed the step's wall time (the ratio is printed as overlap).  The
traced steps run a little slower than untraced ones; the untraced median is printed too.
Prints a table, and as the last line one JSON object.
"""
import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.cases import CONFIGS  # noqa: E402
from config import CELL_TYPES, RNN_IMPLS  # noqa: E402
from utils import ArgumentParser  # noqa: E402

COPY_OPS = {"Split", "SplitV", "ConcatV2", "Concat", "Pack", "Unpack", "Slice",
            "StridedSlice", "StridedSliceGrad", "Reshape", "Transpose", "_MklTranspose",
            "Identity", "Squeeze", "ExpandDims", "Tile", "GatherV2", "ResourceGather",
            "TensorScatterSub", "ScatterNd", "UnsortedSegmentSum", "ConjugateTranspose"}
BOOKKEEPING_OPS = {"Const", "NoOp", "_SOURCE", "_Retval", "_Arg", "VariableV2",
                   "ReadVariableOp", "VarHandleOp", "Placeholder", "PlaceholderWithDefault",
                   "Shape", "Size", "Rank", "BroadcastGradientArgs", "_Recv", "_Send"}
PARTS = ("embedding", "input projection", "recurrence", "layer outputs", "outputs",
         "softmax", "gradient sums", "optimizer", "other")


def classify(node_name, op_type):
    """(direction, part, kind) of one traced op: direction forward, backward or update;
    part one of PARTS (read from the name scopes); kind matmul, element-wise, copy, sum or
    bookkeeping (read from the op type)."""
    name = node_name
    direction = "forward"
    if name.startswith("gradients/"):
        direction, name = "backward", name[len("gradients/"):]
    if name.startswith(("Adam", "clip_by_global_norm", "global_norm")) or "/update_" in name:
        direction, part = "update", "optimizer"
    elif name.startswith("embedding"):
        part = "embedding"
    elif re.match(r"layer_\d+/project(_\d+)?(/|_grad|$)", name):
        part = "input projection"
    elif re.match(r"layer_\d+/t\d+(/|$)", name) or name.startswith("recurrent_weights"):
        part = "recurrence"
    elif re.match(r"layer_\d+/", name):
        part = "layer outputs"
    elif name.startswith("outputs"):
        part = "outputs"
    elif name.startswith(("softmax", "sampled")):
        part = "softmax"
    elif direction == "backward" and re.match(r"AddN(_\d+)?$", name):
        part = "gradient sums"
    else:
        part = "other"
    if "MatMul" in op_type:
        kind = "matmul"
    elif op_type in COPY_OPS or op_type.lstrip("_").replace("Mkl", "") in COPY_OPS:
        kind = "copy"
    elif op_type in ("AddN", "_MklAddN"):
        kind = "sum"
    elif op_type in BOOKKEEPING_OPS:
        kind = "bookkeeping"
    else:
        kind = "element-wise"
    return direction, part, kind


def op_type_of(label, node_name):
    """The op type from a trace's timeline_label ("[mem] name = Type(inputs)")."""
    m = re.search(re.escape(node_name) + r" = ([\w]+)\(", label)
    return m.group(1) if m else "?"


def tally(step_stats_list):
    """{(direction, part, kind): microseconds per step}, ops per step and the step's wall
    microseconds (median), from the step_stats of traced steps."""
    import numpy as np
    total = defaultdict(float)
    ops, walls = [], []
    for stats in step_stats_list:
        starts, ends, n = [], [], 0
        for dev in stats.dev_stats:
            for node in dev.node_stats:
                op = op_type_of(node.timeline_label, node.node_name)
                total[classify(node.node_name, op)] += node.all_end_rel_micros
                starts.append(node.all_start_micros)
                ends.append(node.all_start_micros + node.all_end_rel_micros)
                n += 1
        ops.append(n)
        walls.append(max(ends) - min(starts))
    k = len(step_stats_list)
    return ({key: v / k for key, v in total.items()}, float(np.median(ops)),
            float(np.median(walls)))


def matmul_flops(cfg, V, gates):
    """Forward FLOPs of one step's matmuls by part (the backward pass does twice these)."""
    B, T, E, H = cfg["batch_size"], cfg["seq_length"], cfg["embedding_size"], cfg["rnn_size"]
    layers = cfg["num_layers"]
    project = sum(2 * B * T * (E if i == 0 else H) * gates * H for i in range(layers))
    return {"input projection": project,
            "recurrence": 2 * B * T * H * gates * H * layers,
            "softmax": 2 * B * T * H * V}


def parse_args():
    p = ArgumentParser(description=__doc__.split("\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default="base", choices=list(CONFIGS),
                   help="bench/speed.py's model size (train.py's presets)")
    p.add_argument("--vocab", type=int, default=6000, help="vocabulary size V")
    p.add_argument("--rnncell", default="lstm", choices=CELL_TYPES, help="cell type (cells.py)")
    p.add_argument("--rnn_impl", default="hoisted", choices=RNN_IMPLS,
                   help="the layers' build (seq2seq_rnn.py's RNN_IMPLS)")
    p.add_argument("--bf16", action="store_true",
                   help="oneDNN's bfloat16 rewrite, as train.py --bf16")
    p.add_argument("--steps", type=int, default=5, help="traced steps (after 10 untraced)")
    p.add_argument("--trace", default="", help="also write the last traced step as a "
                   "Chrome trace (open in chrome://tracing or ui.perfetto.dev)")
    a = p.parse_args()
    if a.steps < 1 or a.vocab < 2:
        p.error("--steps must be at least 1 and --vocab at least 2")
    return a


def main():
    a = parse_args()
    import numpy as np
    from tfenv import import_tensorflow, session_config
    from config import CELL_GATES
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    from seq2seq_rnn import Model
    cfg = dict(CONFIGS[a.config], vocab_size=a.vocab, rnncell=a.rnncell, grad_clip=5.0,
               attention=False, rnn_impl=a.rnn_impl)
    B, T = cfg["batch_size"], cfg["seq_length"]
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(0)
        m = Model(cfg)
        init = tf1.global_variables_initializer()
    g.finalize()
    sess = tf1.Session(graph=g, config=session_config(a.bf16))
    sess.run(init)
    rng = np.random.RandomState(0)
    feed = {m.input_data: rng.randint(0, a.vocab, (B, T)),
            m.targets: rng.randint(0, a.vocab, (B, T))}
    fetches = [m.train_cost, m.train_op]
    times = []
    for _ in range(10 + 3 * a.steps):
        t = time.perf_counter()
        sess.run(fetches, feed)
        times.append(time.perf_counter() - t)
    untraced = float(np.median(times[10:]))
    opts = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)
    traced = []
    for _ in range(a.steps):
        md = tf1.RunMetadata()
        sess.run(fetches, feed, options=opts, run_metadata=md)
        traced.append(md.step_stats)
    sess.close()
    if a.trace:
        from tensorflow.python.client import timeline
        from fileio import atomic_write_text
        atomic_write_text(a.trace, timeline.Timeline(traced[-1]).generate_chrome_trace_format())
    us, n_ops, wall = tally(traced)
    report(a, cfg, us, n_ops, wall, untraced, CELL_GATES[a.rnncell])


def report(a, cfg, us, n_ops, wall, untraced, gates):
    from tfenv import cpu_text
    op_total = sum(us.values())
    chars = cfg["batch_size"] * cfg["seq_length"]
    print(f"machine: {cpu_text()}")
    print(f"config {a.config} ({cfg['num_layers']} x {cfg['rnn_size']}, batch "
          f"{cfg['batch_size']} x {cfg['seq_length']}, V {a.vocab:,}), {a.rnncell}, "
          f"{a.rnn_impl}{', bf16' if a.bf16 else ''}")
    print(f"step: untraced {untraced * 1e3:.1f} ms ({chars / untraced:,.0f} chars/s), "
          f"traced {wall / 1e3:.1f} ms; {n_ops:.0f} ops; op time {op_total / 1e3:.1f} ms "
          f"(overlap {op_total / wall:.2f})")
    by_part = defaultdict(float)
    for (direction, part, kind), v in us.items():
        by_part[part] += v
    flops = matmul_flops(cfg, a.vocab, gates)
    print(f"{'part':18s} {'kind':13s} {'forward':>9s} {'backward':>9s} {'update':>9s} "
          f"{'share':>6s}")
    rows = []
    for part in sorted(by_part, key=lambda p: -by_part[p]):
        kinds = defaultdict(lambda: defaultdict(float))
        for (direction, p, kind), v in us.items():
            if p == part:
                kinds[kind][direction] += v
        for kind in sorted(kinds, key=lambda k: -sum(kinds[k].values())):
            d = kinds[kind]
            share = sum(d.values()) / op_total
            if share < 0.002:
                continue
            extra = ""
            if kind == "matmul" and part in flops:
                f_ms, b_ms = d.get("forward", 0) / 1e3, d.get("backward", 0) / 1e3
                gf = [flops[part] * k / (ms / 1e3) / 1e9 if ms else 0
                      for k, ms in ((1, f_ms), (2, b_ms))]
                extra = f"  {gf[0]:.0f} / {gf[1]:.0f} GFLOP/s"
            print(f"{part:18s} {kind:13s} " + " ".join(
                f"{d.get(x, 0) / 1e3:9.2f}" for x in ("forward", "backward", "update"))
                + f" {share:6.1%}{extra}")
            rows.append(dict(part=part, kind=kind, share=share,
                             **{f"{x}_ms": d.get(x, 0) / 1e3
                                for x in ("forward", "backward", "update")}))
    print(json.dumps(dict(config=a.config, vocab=a.vocab, rnncell=a.rnncell,
                          rnn_impl=a.rnn_impl, bf16=a.bf16, untraced_step_ms=untraced * 1e3,
                          traced_step_ms=wall / 1e3, op_ms=op_total / 1e3, ops=n_ops,
                          rows=rows), ensure_ascii=False))


if __name__ == "__main__":
    main()

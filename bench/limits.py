"""What the hardware allows a training step: FLOPs per character from the shapes, the
matmul limit (the step's matmuls timed alone, chained so grappler cannot fold them) and
the ceiling (that limit plus the update's and the logits' floors).  bench/speed.py puts
each row against them."""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from config import CELL_GATES  # noqa: E402

GATES = CELL_GATES               # the kernel's width in units of H, per cell type


def flops_per_char(cfg, vocab_size, cell):
    """Training FLOPs per character, counted from the shapes: every layer's input
    projection [in, G*H] and recurrent product [H, G*H], and the softmax [H, V]; each
    multiply-add is 2 FLOPs, and the backward pass costs two forward passes (gradients
    for inputs and for weights).  Element-wise work (gates, exp) is left out: it is a few
    percent at these sizes."""
    G, H, E = GATES[cell], cfg["rnn_size"], cfg["embedding_size"]
    macs = 0
    for layer in range(cfg["num_layers"]):
        n_in = E if layer == 0 else H
        macs += n_in * G * H + H * G * H
    macs += H * vocab_size
    return 3 * 2 * macs


def time_chained(setup, step, repeats=10, chain=10):
    """Seconds one op takes in TensorFlow here: `setup()` makes its inputs in a new graph,
    `step(inputs)` builds the op (a tensor or a stateful op); `chain` of them one after
    the other in one Session.run, median of `repeats` runs divided by `chain`, so the
    per-run overhead is not charged to the op, the executor's per-op cost is (as in a
    training step)."""
    import numpy as np
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        inputs = setup()
        ops = []
        for _ in range(chain):
            with tf.control_dependencies(ops[-1:]):
                ops.append(step(inputs))
        # A stateless op wanted only as a control input is pruned by Grappler: tensors
        # are fetched (reduce them to a number in `step`); stateful ops are grouped.
        done = tf.add_n(ops) if isinstance(ops[0], tf.Tensor) else tf.group(ops)
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=g) as sess:
        sess.run(init)
        run = sess.make_callable(done)
        for _ in range(3):
            run()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t)
    return float(np.median(ts)) / chain


def matmul_peak(cfg, vocab_size, cell, dtype="float32", repeats=10, chain=10):
    """This machine's matmul throughput (GFLOP/s) in TensorFlow on the model's own shapes:
    the input projections [B*T, in] x [in, G*H], the recurrent [B, H] x [H, G*H] and the
    softmax [B*T, H] x [H, V], weighted as one training step uses them, each timed by
    time_chained().  The limit our training could reach if nothing but these products
    took time."""
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    G, H, E = GATES[cell], cfg["rnn_size"], cfg["embedding_size"]
    N, B, T = cfg["batch_size"] * cfg["seq_length"], cfg["batch_size"], cfg["seq_length"]
    shapes = []                                   # (m, k, n, how many per step)
    for layer in range(cfg["num_layers"]):
        shapes.append((N, E if layer == 0 else H, G * H, 1))
        shapes.append((B, H, G * H, T))
    shapes.append((N, H, vocab_size, 1))
    total_flops = total_s = 0.0
    for m, k, n, times in shapes:
        def setup():
            a = tf.Variable(tf.random.normal([m, k]))
            b = tf.Variable(tf.random.normal([k, n]))
            if dtype == "bfloat16":
                a, b = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
            return a, b

        def step(ab):
            return tf.reduce_sum(tf.matmul(*ab)[:1, :1])       # the whole product; a number out
        total_flops += 2.0 * m * k * n * times
        total_s += time_chained(setup, step, repeats, chain) * times
    return total_flops / total_s / 1e9


def update_floor(cfg, vocab_size, cell, repeats=10, chain=5):
    """Seconds per training step that no build of this model can avoid besides its matmuls,
    measured in TensorFlow on this machine (time_chained()): the optimizer's update exactly
    as our Model builds it (clip by the global norm, then TF1 Adam's fused kernel over
    every trainable variable, shapes taken from the Model itself; memory-bound: it reads
    and writes each weight and its two moments), and one element-wise pass over the
    logits [B*T, V] (an exp: any softmax must read them and write their gradient at least
    once; ours makes several passes).  Returns {"update_s", "logits_pass_s", "params"}."""
    import numpy as np
    from tfenv import import_tensorflow
    from seq2seq_rnn import Model
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    with tf.Graph().as_default():                 # the model's own variable shapes
        Model(dict(cfg, vocab_size=vocab_size, rnncell=cell, attention=False),
              training=False)
        shapes = [v.shape.as_list() for v in tf1.trainable_variables()]
    N = cfg["batch_size"] * cfg["seq_length"]

    def adam_setup():
        weights = [tf.Variable(tf.random.normal(s, stddev=0.01)) for s in shapes]
        grads = [tf.Variable(tf.random.normal(s, stddev=0.01)) for s in shapes]
        return weights, grads, tf1.train.AdamOptimizer(0.001)

    def adam_step(inputs):
        weights, grads, optimizer = inputs
        clipped, _ = tf.clip_by_global_norm([tf.identity(g) for g in grads], 5.0)
        return optimizer.apply_gradients(zip(clipped, weights))

    def exp_step(x):
        return tf.reduce_sum(tf.exp(x)[:1, :1])         # the whole exp; a number out
    return {"update_s": time_chained(adam_setup, adam_step, repeats, chain),
            "logits_pass_s": time_chained(
                lambda: tf.Variable(tf.random.normal([N, vocab_size])), exp_step,
                repeats, chain),
            "params": int(sum(int(np.prod(s)) for s in shapes))}


def ceiling_chars_per_s(cfg, fpc, peak_gflops, floor):
    """The most any build of this training step could reach here: every FLOP at the
    measured matmul limit, plus the update and the one logits pass of update_floor()."""
    chars = cfg["batch_size"] * cfg["seq_length"]
    step = chars * fpc / (peak_gflops * 1e9) + floor["update_s"] + floor["logits_pass_s"]
    return chars / step


def add_limits(row, cfg, V, cell):
    """The row's FLOPs per character, the matmul limit (peak) and the ceiling (the limit
    plus the update and logits floors), and its shares of them; returns (fpc, peak)."""
    fpc = flops_per_char(cfg, V, cell)
    peak = matmul_peak(cfg, V, cell)
    row.update(flops_per_char=fpc, peak_gflops=peak, tf_gflops=row["tf_chars_per_s"] * fpc / 1e9)
    row["tf_share_of_peak"] = row["tf_gflops"] / peak
    floor = update_floor(cfg, V, cell)
    row.update(update_s=floor["update_s"], logits_pass_s=floor["logits_pass_s"],
               params=floor["params"],
               ceiling_chars_per_s=ceiling_chars_per_s(cfg, fpc, peak, floor))
    row["tf_share_of_ceiling"] = row["tf_chars_per_s"] / row["ceiling_chars_per_s"]
    row["ceiling_share_of_peak"] = row["ceiling_chars_per_s"] * fpc / 1e9 / peak
    return fpc, peak


def gap_split(ours, reference, ceiling):
    """Where a row trails the reference, in chars/s: (the matmul kernel's part, ours).
    No build on TensorFlow passes the ceiling, so the part of the gap above it is the
    kernel's (TensorFlow's matmuls against the reference's on these shapes); the rest,
    from us up to the ceiling or the reference, is ours to close.  (0, 0) when ours
    leads."""
    if ours >= reference:
        return 0.0, 0.0
    kernel = max(0.0, reference - ceiling)
    return kernel, max(0.0, reference - kernel - ours)

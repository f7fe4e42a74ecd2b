"""seq2seq_rnn.Model in-process: learning, cell types, separate layer weights, causal
attention, checkpoint round trip, and the inference graph agreeing with training."""
import numpy as np
import pytest

from tfenv import import_tensorflow

tf = import_tensorflow()
tf1 = tf.compat.v1

from seq2seq_rnn import Model  # noqa: E402


def cfg(**kw):
    c = dict(vocab_size=12, rnncell="lstm", num_layers=2, rnn_size=16, embedding_size=8,
             batch_size=4, seq_length=6, learning_rate=0.02, grad_clip=5.0, attention=False)
    c.update(kw)
    return c


def build(config, infer=False, seed=0, step=False):
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(seed)
        m = Model(config, infer=infer)
        if step:
            m.x = tf1.placeholder(tf.int32, [])
            h, m.step_state = m.step(m.x, m.initial_state)
            m.step_logits = tf.linalg.matvec(m.softmax_w, h, transpose_a=True) + m.softmax_b
        init = tf1.global_variables_initializer()
        saver = tf1.train.Saver()
    g.finalize()
    sess = tf1.Session(graph=g)
    sess.run(init)
    return m, sess, saver


def repetitive_batches(c, steps):
    """A periodic id sequence cut into contiguous batches, state carried."""
    period = np.array([1, 2, 3, 4, 5, 0, 6, 7, 8, 0], dtype=np.int32)
    B, T = c["batch_size"], c["seq_length"]
    text = np.tile(period, B * T * (steps + 1) // len(period) + 2)
    rows = text[:B * T * steps + 1]
    x = rows[:-1].reshape(B, -1)
    y = rows[1:].reshape(B, -1)
    return [(x[:, i * T:(i + 1) * T], y[:, i * T:(i + 1) * T]) for i in range(steps)]


def train_losses(m, sess, batches, epochs):
    losses = []
    for _ in range(epochs):
        state = sess.run(m.initial_state)
        total = 0.0
        for x, y in batches:
            feed = {m.input_data: x, m.targets: y}
            feed.update(m.state_feed(state))
            c, state, _ = sess.run([m.cost, m.final_state, m.train_op], feed)
            total += c
        losses.append(total / len(batches))
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_every_cell_and_depth_builds_and_learns(cell, layers):
    c = cfg(rnncell=cell, num_layers=layers)
    m, sess, _ = build(c)
    batches = repetitive_batches(c, 10)
    x, y = batches[0]
    initial = sess.run(m.cost, {m.input_data: x, m.targets: y})
    assert initial == pytest.approx(np.log(12), rel=0.1)        # starts near uniform
    losses = train_losses(m, sess, batches, epochs=8)
    assert losses[-1] < 0.3 * initial, losses


def test_layers_have_separate_weights():
    m, sess, _ = build(cfg(num_layers=3, rnn_size=16, embedding_size=16))
    names = [v.name for v in m.cells[0].kernel.graph.get_collection("trainable_variables")]
    kernels = [n for n in names if n.startswith("rnn/") and n.endswith("kernel:0")]
    assert kernels == ["rnn/layer_0/lstm/kernel:0", "rnn/layer_1/lstm/kernel:0",
                       "rnn/layer_2/lstm/kernel:0"]
    values = sess.run([cell.kernel for cell in m.cells])
    assert not np.allclose(values[0], values[1]) and not np.allclose(values[1], values[2])


def test_gru_and_rnn_states_carry_over_batches():
    for cell in ("gru", "rnn"):
        c = cfg(rnncell=cell)
        m, sess, _ = build(c)
        x, y = repetitive_batches(c, 1)[0]
        zero = sess.run(m.initial_state)
        s1 = sess.run(m.final_state, {m.input_data: x, m.targets: y})
        feed = {m.input_data: x}
        l0 = sess.run(m.logits, feed)
        feed.update(m.state_feed(s1))
        l1 = sess.run(m.logits, feed)
        assert not np.allclose(l0, l1)          # the fed state matters
        assert np.asarray(zero[0][0]).shape == (4, 16)


@pytest.mark.parametrize("attention", [False, True])
def test_future_inputs_do_not_change_earlier_logits(attention):
    c = cfg(attention=attention, batch_size=2, seq_length=8)
    m, sess, _ = build(c)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, (2, 8)).astype(np.int32)
    base = sess.run(m.logits, {m.input_data: x}).reshape(2, 8, 12)
    for t in range(1, 8):
        x2 = x.copy()
        x2[:, t:] = (x2[:, t:] + 5) % 12
        out = sess.run(m.logits, {m.input_data: x2}).reshape(2, 8, 12)
        np.testing.assert_allclose(out[:, :t], base[:, :t], rtol=1e-5, atol=1e-5)
        assert not np.allclose(out[:, t], base[:, t])


def test_attention_reaches_back_within_the_window():
    """Attention must actually use the past: changing an early input changes later logits
    even when the recurrent path is made to forget (weights of the rnn set to zero)."""
    c = cfg(attention=True, rnncell="rnn", num_layers=1, batch_size=1, seq_length=5)
    m, sess, _ = build(c)
    x = np.array([[1, 2, 3, 4, 5]], np.int32)
    base = sess.run(m.logits, {m.input_data: x})
    x2 = x.copy()
    x2[0, 0] = 9
    assert not np.allclose(sess.run(m.logits, {m.input_data: x2})[-1], base[-1])


@pytest.mark.slow
def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    c = cfg(rnncell="gru")
    m, sess, saver = build(c, seed=1)
    train_losses(m, sess, repetitive_batches(c, 3), epochs=1)
    x = repetitive_batches(c, 1)[0][0]
    before = sess.run(m.logits, {m.input_data: x})
    path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=3)
    m2, sess2, saver2 = build(c, seed=99)
    assert not np.allclose(sess2.run(m2.logits, {m2.input_data: x}), before)
    saver2.restore(sess2, path)
    np.testing.assert_array_equal(sess2.run(m2.logits, {m2.input_data: x}), before)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "attention"])
def test_inference_graph_matches_training_graph_step_by_step(tmp_path, kind):
    """Feeding characters one at a time (the sampler) gives the training graph's
    probabilities, state and attention buffer carried along."""
    c = cfg(rnncell="lstm" if kind == "attention" else kind, attention=kind == "attention",
            batch_size=1, seq_length=7)
    m, sess, saver = build(c, seed=2)
    train_losses(m, sess, repetitive_batches(dict(c, batch_size=1), 4), epochs=2)
    path = saver.save(sess, str(tmp_path / "m.ckpt"))
    x = np.array([[3, 1, 4, 1, 5, 9, 2]], np.int32)
    want = sess.run(m.probs, {m.input_data: x})
    mi, si, si_saver = build(c, infer=True)
    si_saver.restore(si, path)
    state = si.run(mi.initial_state)
    got = []
    for t in range(7):
        feed = {mi.input_data: x[:, t:t + 1]}
        feed.update(mi.state_feed(state))
        p, state = si.run([mi.probs, mi.final_state], feed)
        got.append(p[0])
    np.testing.assert_allclose(np.array(got), want, rtol=1e-4, atol=1e-6)


def test_infer_does_not_mutate_callers_config():
    c = cfg()
    build(c, infer=True)
    assert c["batch_size"] == 4 and c["seq_length"] == 6


@pytest.mark.parametrize("kind,attention", [("lstm", True), ("gru", False),
                                            ("rnn", False)])
def test_lean_step_equals_the_inference_graph(kind, attention):
    """Model.step (what the sampling engine runs: no reshapes, the output layer apart)
    gives the [1, 1] inference graph's logits and state, character after character."""
    c = cfg(rnncell=kind, attention=attention)
    m, sess, _ = build(c, infer=True, step=True)
    state = lean = sess.run(m.initial_state)
    for x in [3, 1, 4, 1, 5, 9, 2, 6]:
        feed = {m.input_data: [[x]]}
        feed.update(m.state_feed(state))
        want, state = sess.run([m.logits, m.final_state], feed)
        feed = {m.x: x}
        feed.update(m.state_feed(lean))
        got, lean = sess.run([m.step_logits, m.step_state], feed)
        np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(tf.nest.flatten(state), tf.nest.flatten(lean)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_graph_ops_are_not_created_in_the_loop():
    """Model builds every op up front: a finalized graph still trains and sets lr."""
    c = cfg()
    m, sess, _ = build(c)       # build() finalizes the graph
    m.set_lr(sess, 0.005)
    m.set_progress(sess, 3, 7)
    assert sess.run([m.lr, m.epoch, m.batch_pointer]) == [pytest.approx(0.005), 3, 7]
    train_losses(m, sess, repetitive_batches(c, 2), epochs=1)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_hoisted_input_projection_equals_the_plain_per_step_cell(cell):
    """The fast build (all inputs projected in one matmul) computes what TF's own cells
    compute ([x, h] x kernel per step): same weights, same logits and state."""
    x = np.random.default_rng(1).integers(0, 12, (4, 6)).astype(np.int32)
    outs = []
    for impl in ("hoisted", "plain"):
        m, sess, _ = build(cfg(rnncell=cell, rnn_impl=impl), seed=7)
        outs.append(sess.run([m.logits, m.final_state], {m.input_data: x}))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(tf.nest.flatten(outs[0][1]), tf.nest.flatten(outs[1][1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_fast_backward_gives_tensorflows_own_gradients_and_updates(cell):
    """The default build's backward (recurrent products' input gradient from a stored
    w^T, their weight gradients batched over the steps: Cell.rec, Model._gradients) gives
    every variable the gradient TensorFlow's own per-step autodiff gives (stepwise) and
    that TF-style cells give (plain), with the state carried in; ten Adam steps later the
    weights and losses agree too.  Three layers, so a middle layer is checked, and 9 steps,
    so the wavefront's input products (a quarter of T each) come out uneven (2+2+2+2+1)."""
    c = cfg(rnncell=cell, num_layers=3, seq_length=9)
    batches = repetitive_batches(c, 10)
    results = []
    for impl in ("hoisted", "stepwise", "plain"):
        m, sess, _ = build(dict(c, rnn_impl=impl), seed=5)
        tvars = m._tvars
        state = [np.full(s.shape.as_list(), 0.3, np.float32)
                 for s in tf.nest.flatten(m.initial_state)]
        feed = {m.input_data: batches[0][0], m.targets: batches[0][1]}
        feed.update(dict(zip(tf.nest.flatten(m.initial_state), state)))
        grads = sess.run(m._grads, feed)
        losses = train_losses(m, sess, batches, epochs=1)
        results.append((grads, losses, sess.run(tvars)))
    assert [v.name for v in m._tvars][-2:] == ["softmax_w:0", "softmax_b:0"]
    for grads, losses, weights in results[1:]:
        for a, b in zip(results[0][0], grads):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(results[0][1], losses, rtol=1e-5)
        for a, b in zip(results[0][2], weights):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_an_unknown_rnn_impl_is_refused():
    with pytest.raises(ValueError, match="rnn_impl must be one of"):
        Model(cfg(rnn_impl="fast"))


def test_fused_cross_entropy_matches_tensorflow_value_and_gradient():
    from seq2seq_rnn import softmax_cross_entropy
    rng = np.random.default_rng(3)
    lg = (rng.standard_normal((9, 50)) * 4).astype(np.float32)
    lg[0, 3] = 80.0                                   # large logits stay finite
    y = rng.integers(0, 50, 9).astype(np.int32)
    weights = rng.random(9).astype(np.float32)        # a non-uniform upstream gradient
    g = tf.Graph()
    with g.as_default():
        logits = tf.constant(lg)
        ours = softmax_cross_entropy(logits, tf.constant(y))
        ref = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        grads = tf.gradients(tf.reduce_sum(ours * weights), logits)[0], \
            tf.gradients(tf.reduce_sum(ref * weights), logits)[0]
    with tf1.Session(graph=g) as sess:
        a, b, ga, gb = sess.run([ours, ref, *grads])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-6)


def test_variable_names_and_shapes_are_the_documented_checkpoint_contract():
    """Renaming a variable breaks every saved model: these names are fixed."""
    c = cfg(rnncell="lstm", num_layers=2, attention=True, vocab_size=12, embedding_size=8,
            rnn_size=16)
    g = tf.Graph()
    with g.as_default():
        Model(c)
        shapes = {v.name: v.shape.as_list() for v in tf1.global_variables()
                  if "Adam" not in v.name and not v.name.startswith("beta")}
    assert shapes == {
        "word_embedding:0": [12, 8],
        "rnn/layer_0/lstm/kernel:0": [24, 64], "rnn/layer_0/lstm/bias:0": [64],
        "rnn/layer_1/lstm/kernel:0": [32, 64], "rnn/layer_1/lstm/bias:0": [64],
        "attention/score_w:0": [16, 16], "attention/out_w:0": [32, 16],
        "attention/out_b:0": [16],
        "softmax_w:0": [16, 12], "softmax_b:0": [12],
        "global_step:0": [], "learning_rate:0": [], "epoch:0": [], "batch_pointer:0": [],
        "best_val_loss:0": [],
    }
    g = tf.Graph()
    with g.as_default():
        Model(cfg(rnncell="gru", num_layers=1))
        names = {v.name for v in tf1.trainable_variables()}
    assert {"rnn/layer_0/gru/gates/kernel:0", "rnn/layer_0/gru/gates/bias:0",
            "rnn/layer_0/gru/candidate/kernel:0", "rnn/layer_0/gru/candidate/bias:0"} <= names


def test_every_cell_type_argparse_offers_is_one_registered_class():
    from seq2seq_rnn import Cell
    from config import CELL_TYPES
    assert sorted(Cell.REGISTRY) == sorted(CELL_TYPES)
    assert all(Cell.REGISTRY[k].kind == k for k in CELL_TYPES)
    # each one's gate count, which the memory check and the bench read from CELL_GATES
    from config import CELL_GATES
    for kind, G in CELL_GATES.items():
        with tf.Graph().as_default():
            Cell.make(kind, 8, 5, 0)
            width = sum(int(v.shape[-1]) for v in tf1.trainable_variables()
                        if v.shape.ndims == 2)
        assert width == G * 8, (kind, width)


def _onednn_on(role, user=None):
    """Whether TensorFlow runs oneDNN's rewrites in a fresh process that imported it as
    `role` does (None: a plain `import tensorflow`), the user's setting being `user`."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if user is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    imp = ("import tensorflow" if role is None else
           f"import tfenv; tfenv.import_tensorflow({role!r})")
    code = (f"{imp}\nfrom tensorflow.python.util import _pywrap_util_port as port\n"
            "print(port.IsMklEnabled())")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[-1] == "True"


@pytest.mark.slow
def test_onednn_rewrites_on_for_training_default_for_sampling_and_the_user_wins():
    """TensorFlow leaves oneDNN's rewrites off on AVX2-only CPUs, where training is
    1.3-1.6x faster with them and the batch-1 sampling step slower (tfenv.ONEDNN_BY_ROLE):
    training turns them on, sampling keeps TensorFlow's default, TF_ENABLE_ONEDNN_OPTS=0
    turns them off."""
    assert _onednn_on("train")
    assert _onednn_on("sample") == _onednn_on(None)
    assert not _onednn_on("train", user="0")


def test_sampled_softmax_trains_the_same_variables_without_the_full_logits():
    """--sampled_softmax: the training loss never reads the [B*T, V] logits (that is the
    saving), the variables are the full softmax's (one kind of checkpoint), the full
    cross-entropy still falls, and S >= V is the full softmax."""
    c = cfg(vocab_size=40, sampled_softmax=8, learning_rate=0.02)
    m, sess, _ = build(c, seed=3)
    assert m.sampled and m.train_cost is not m.cost
    g = tf.Graph()
    with g.as_default():
        probe = Model(c)
        assert tf.gradients(probe.train_cost, probe.logits)[0] is None
        assert tf.gradients(probe.cost, probe.logits)[0] is not None
        sampled = {v.name: v.shape.as_list() for v in tf1.trainable_variables()}
    g = tf.Graph()
    with g.as_default():
        full = Model(dict(c, sampled_softmax=0))
        assert not full.sampled and full.train_cost is full.cost
        assert {v.name: v.shape.as_list() for v in tf1.trainable_variables()} == sampled
    with tf.Graph().as_default():
        assert not Model(dict(c, sampled_softmax=40)).sampled      # S >= V: full
    with tf.Graph().as_default():
        assert not Model(c, training=False).sampled                 # scoring graphs
    # periodic text over 10 of the 40 ids: the full cross-entropy falls from ln(40)
    batches = repetitive_batches(c, 10)
    x, y = batches[0]
    before = sess.run(m.cost, {m.input_data: x, m.targets: y})
    assert before == pytest.approx(np.log(40), rel=0.1)
    train_losses(m, sess, batches, epochs=16)
    after = np.mean([sess.run(m.cost, {m.input_data: bx, m.targets: by})
                     for bx, by in batches])
    assert after < 0.5 * before, (before, after)


def test_run_epoch_reports_the_full_loss_of_a_sampled_model():
    """The loss a sampled-softmax run reports is the full softmax's, measured on every
    MEASURE_EVERY-th batch before that batch's update, and the mean of those."""
    from training import MEASURE_EVERY, run_epoch
    c = cfg(vocab_size=40, sampled_softmax=8)
    n = MEASURE_EVERY + 4
    batches = repetitive_batches(c, n)
    xs, ys = [b[0] for b in batches], [b[1] for b in batches]
    m, sess, saver = build(c, seed=5)
    full0 = sess.run(m.cost, {m.input_data: xs[0], m.targets: ys[0]})
    seen = []
    mean, ran = run_epoch(sess, m, xs, ys, eval_op=m.train_op,
                          on_step=lambda i, loss, gn: seen.append(loss) and False)
    assert ran == n and len(seen) == n
    assert seen[0] == pytest.approx(full0, rel=1e-6)
    # a new figure at MEASURE_EVERY, the latest one in between
    assert len(set(seen[:MEASURE_EVERY])) == 1 and seen[MEASURE_EVERY] != seen[0]
    assert mean == pytest.approx((seen[0] + seen[MEASURE_EVERY]) / 2, rel=1e-6)


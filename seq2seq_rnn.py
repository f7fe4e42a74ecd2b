"""The character model of the article, in TF1 style (tf.compat.v1 graph + Session).

    input_data [B, T] int --word_embedding--> [T, B, E] --N RNN layers--> [T, B, H]
      (--causal attention, optional-->) --softmax_w/b--> logits [B*T, V] --> probs, cost

Model(args, infer=False) builds the training graph for batch_size x seq_length; infer=True
builds the batch-1, length-1 graph that sampling steps character by character, with the
same variable names, so one checkpoint serves both.

Variable names and shapes (stable: checkpoints keep loading as the code evolves):
  word_embedding                    [V, E]
  rnn/layer_<i>/lstm/kernel         [in_i + H, 4H]   gates i, j, f, o (TF LSTMCell order)
  rnn/layer_<i>/lstm/bias           [4H]
  rnn/layer_<i>/gru/gates/kernel    [in_i + H, 2H]   r, u (TF GRUCell order)
  rnn/layer_<i>/gru/gates/bias      [2H]
  rnn/layer_<i>/gru/candidate/kernel [in_i + H, H]
  rnn/layer_<i>/gru/candidate/bias  [H]
  rnn/layer_<i>/rnn/kernel          [in_i + H, H]
  rnn/layer_<i>/rnn/bias            [H]
  attention/score_w [H, H], attention/out_w [2H, H], attention/out_b [H]   (--attention)
  softmax_w [H, V], softmax_b [V]
  global_step, learning_rate, epoch, batch_pointer, best_val_loss  (training bookkeeping)
where in_0 = E and in_i = H above.  Every layer has weights of its own: the article's
`[cell] * num_layers` made all layers share one set (and needed equal sizes).

The cells (cells.py, one class each) are written on tf.compat.v1 variables (TensorFlow no
longer ships the contrib cells; the legacy ones would need the tf-keras package): each
layer multiplies the
inputs of all time steps by its input weights in one matmul outside the recurrence, so the
unrolled loop only does the [B, H] x [H, G*H] recurrent product per step.  Config key
rnn_impl='plain' computes the same thing as TF's own cells do ([x, h] x kernel at every
step); bench/speed.py uses it as the straightforward reference.
"""
import copy

import tensorflow as tf

from cells import Cell, build_weight
from config import CELL_TYPES, RNN_IMPLS, field

tf1 = tf.compat.v1
nest = tf.nest


# How the layers are built (config key rnn_impl; bench/speed.py and bench/profile.py pick
# one): "hoisted", the default: inputs projected outside the recurrence, and in training
# the recurrent products' backward from a stored w^T with their weight gradients made for
# all steps in one product (Cell.rec, Model._gradients); "stepwise": the same forward with
# TensorFlow's own per-step gradients (the build before that backward: the same numbers,
# 1.3-1.5x slower); "plain": [x, h] x kernel at every step, as TF's own cells compute it.
# (config.RNN_IMPLS, so bench/profile.py's --help needs no TensorFlow.)
# The upper layers' input products per window (run_layers' wavefront).
WAVEFRONT_PARTS = 4


def _cfg(args):
    """A private dict copy of args (argparse.Namespace or dict); the caller's is untouched."""
    d = dict(vars(args)) if not isinstance(args, dict) else dict(args)
    return copy.deepcopy(d)


def run_layers(inputs_tm, initial_state, cells, keep_prob=None, hoisted=True):
    """Run the stacked cells over time-major inputs [T, B, in].

    Layer by layer: the inputs are multiplied by the input weights outside the recurrence
    (layer 0: all T steps in one matmul; above it, a quarter of the steps per matmul), then
    T recurrent steps.
    Returns (list of T top-layer outputs [B, H], tuple of final states per layer).
    """
    T = inputs_tm.shape[0]
    xs = None                   # the layer's per-step inputs, T x [B, in] (None: layer 0)
    final = []
    # Per-step slices come from tf.unstack/tf.split, never x[t]: their gradient is one
    # stack or concat, while each x[t] would add a zero-padded full-size tensor to the
    # backward pass.  Name scopes (layer_<i>/project, layer_<i>/t<t>; variables are
    # made elsewhere, so checkpoints do not see them) let bench/profile.py read a trace.
    for i, (cell, state) in enumerate(zip(cells, initial_state)):
        outputs = []
        with tf.name_scope(f"layer_{i}"):
            if not hoisted:
                xp = xs if xs is not None else tf.unstack(inputs_tm, num=T)
            elif xs is None:
                with tf.name_scope("project"):
                    x = inputs_tm
                    xp = cell.project_inputs(tf.reshape(x, [-1, x.shape[-1]]))  # [T*B, G*H]
                    xp = tf.split(xp, T)
            else:
                # A wavefront: the steps of layer i in quarter k need layer i-1's outputs
                # of quarter k only (one input product per quarter), so they run beside
                # layer i-1's later steps, and backwards layer i-1's backward beside
                # layer i's: two chains for two cores.  Large config, V 2 k: 5.8 k against
                # 5.5 k chars/s for one product of all T steps (5 rounds, each won).
                xp, k = [], max(1, T // WAVEFRONT_PARTS)
                for t0 in range(0, T, k):
                    with tf.name_scope("project"):
                        part = xs[t0:t0 + k]
                        xp += tf.split(cell.project_inputs(tf.concat(part, 0)), len(part))
            for t in range(T):
                with tf.name_scope(f"t{t}"):
                    state = (cell.step(xp[t], state) if hoisted
                             else cell.step_plain(xp[t], state))
                    outputs.append(cell.output(state))
            final.append(state)
            if keep_prob is not None:
                outputs = [tf.nn.dropout(o, rate=1.0 - keep_prob) for o in outputs]
        xs = outputs
    return outputs, tuple(final)


class CausalAttention:
    """Luong-style attention of each position over the positions before it (and itself).

    In a language model y_t = x_{t+1}, so a position that may look at later inputs sees
    its own target: training loss falls, generation is garbage.  Here position t of the
    window attends to positions <= t only; when sampling, to a rolling buffer of the last
    `length` top-layer outputs (the current one included), which is what training shows.
    """

    def __init__(self, num_units):
        with tf1.variable_scope("attention"):
            self.score_w = build_weight([num_units, num_units], "score_w")
            self.out_w = build_weight([2 * num_units, num_units], "out_w")
            self.out_b = build_weight([num_units], "out_b", initializer=tf1.zeros_initializer())

    def _combine(self, context, h):
        return tf.tanh(tf.matmul(tf.concat([context, h], -1), self.out_w) + self.out_b)

    def over_window(self, hs):
        """hs [B, T, H] -> attended outputs [B, T, H], position t seeing hs[:, :t+1]."""
        T = hs.shape[1]
        q = tf.einsum("bth,hk->btk", hs, self.score_w)
        scores = tf.matmul(q, hs, transpose_b=True)                      # [B, T(t), T(s)]
        causal = tf.linalg.band_part(tf.ones([T, T]), -1, 0)             # s <= t
        scores = scores * causal - 1e9 * (1.0 - causal)
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), hs)          # [B, T, H]
        B, H = tf.shape(hs)[0], hs.shape[-1]
        out = self._combine(tf.reshape(context, [-1, H]), tf.reshape(hs, [-1, H]))
        return tf.reshape(out, [B, T, H])

    def over_buffer(self, h, buffer, valid):
        """One step: h [B, H]; buffer [B, L, H] past outputs; valid [B, L] 1 where filled.
        Returns (output [B, H], new buffer, new valid) with h pushed into the buffer."""
        buffer = tf.concat([buffer[:, 1:], h[:, None, :]], 1)
        valid = tf.concat([valid[:, 1:], tf.ones_like(valid[:, :1])], 1)
        q = tf.matmul(h, self.score_w)                                   # [B, H]
        scores = tf.reduce_sum(q[:, None, :] * buffer, -1)               # [B, L]
        scores = scores * valid - 1e9 * (1.0 - valid)
        context = tf.reduce_sum(tf.nn.softmax(scores)[:, :, None] * buffer, 1)
        return self._combine(context, h), buffer, valid


def softmax_cross_entropy(logits, labels):
    """Per-row cross-entropy of integer labels, as tf.nn.sparse_softmax_cross_entropy_
    with_logits computes it, with a hand-written gradient.

    logits [N, V], labels [N] -> [N].  The gradient is softmax - onehot, made from the
    forward pass's exp() and a scatter of the N labels, so the backward pass reads the
    [N, V] array twice instead of many times.  With V = 6,000 and N = 512 the seed
    config's training step went from about 22 ms to 16 ms on a 2-core CPU (bench/speed.py).
    """
    n = tf.shape(logits)[0]

    @tf.custom_gradient
    def xent(lg):
        m = tf.stop_gradient(tf.reduce_max(lg, 1, keepdims=True))
        e = tf.exp(lg - m)                                         # [N, V]
        total = tf.reduce_sum(e, 1, keepdims=True)                 # [N, 1]
        loss = tf.math.log(total[:, 0]) + m[:, 0] - tf.gather(lg, labels, batch_dims=1)

        def grad(dy):                                              # dy [N]
            p = e * (dy[:, None] / total)                          # softmax * dy
            at = tf.stack([tf.range(n), labels], 1)
            return tf.tensor_scatter_nd_sub(p, at, dy)             # - onehot * dy
        return loss, grad
    return xent(logits)


def sampled_size(cfg):
    """Candidates of the training loss's sampled softmax (0: the full softmax); configs
    written before the flag existed trained the full softmax."""
    return int(cfg.get("sampled_softmax") or 0)


def sampled_cost(softmax_w, softmax_b, outputs, labels, num_sampled):
    """Mean sampled-softmax loss (tf.nn.sampled_softmax_loss) of outputs [B*T, H] against
    labels [B*T], for training only.

    Each step draws num_sampled distinct candidate classes from a log-uniform
    (Zipfian) distribution over the ids, which fits because the vocabulary is ordered
    most frequent first (preprocess.build_vocab; a fine-tune's new characters come
    last, and are rare in its text too).  Only the S candidates' and the B*T targets'
    columns of softmax_w are multiplied: [B*T, H] x [H, S + 1] instead of [H, V].
    Candidates that happen to be a row's target are removed from that row, and every
    logit is corrected by -log Q(class), so the expected gradient approximates the full
    softmax's.  The variables are the same as the full softmax's: a model trained
    either way is the same model.  (A version with a hand-written gradient on the
    [H, V] layout, sparing the transposes, measured no faster: 17.3-18.7 k against
    18.0-19.1 k characters/s, AMD EPYC Genoa, bfloat16.)"""
    loss = tf.nn.sampled_softmax_loss(
        weights=tf.transpose(softmax_w),                           # [V, H]
        biases=softmax_b, labels=tf.cast(labels[:, None], tf.int64),
        inputs=outputs, num_sampled=num_sampled,
        num_classes=softmax_b.shape[0], remove_accidental_hits=True)
    # (the candidates' seed comes from the graph's, which train.py sets from --seed)
    return tf.reduce_mean(loss)


class Model:
    def __init__(self, args, infer=False, training=None, replicas=None):
        """infer: the batch-1, length-1 sampling graph.  training (default: not infer):
        build the optimizer; Model(cfg, training=False) is the batch graph for scoring.
        replicas: training on a cluster (cluster.py) of this many workers, whose
        gradients a SyncReplicasOptimizer averages into one update per step."""
        cfg = _cfg(args)
        # Attention at sampling time looks back as far as training windows did.
        attn_length = int(cfg.get("attn_length") or cfg["seq_length"])
        cfg["attn_length"] = attn_length
        if infer:                    # sampling feeds one character at a time
            cfg["batch_size"], cfg["seq_length"] = 1, 1
        self.config = cfg
        self.infer = infer
        B, T = cfg["batch_size"], cfg["seq_length"]
        V, E, H = cfg["vocab_size"], cfg["embedding_size"], cfg["rnn_size"]
        if cfg["rnncell"] not in CELL_TYPES:
            raise ValueError(f"rnncell must be one of {CELL_TYPES}")
        attention = bool(cfg.get("attention", False))

        self.input_data = tf1.placeholder(tf.int32, [B, T], name="input_data")
        self.targets = tf1.placeholder(tf.int32, [B, T], name="targets")
        # 1.0 unless fed: validation and sampling run without dropout.
        self.keep_prob = tf1.placeholder_with_default(1.0, [], name="keep_prob")

        self.word_embedding = build_weight([V, E], "word_embedding")
        with tf1.variable_scope("rnn"):
            in_sizes = [E] + [H] * (cfg["num_layers"] - 1)
            self.cells = [Cell.make(cfg["rnncell"], H, n_in, i)
                          for i, n_in in enumerate(in_sizes)]
        training = (not infer) if training is None else training
        impl = cfg.get("rnn_impl") or "hoisted"
        if impl not in RNN_IMPLS:
            raise ValueError(f"rnn_impl must be one of {RNN_IMPLS}, not {impl!r}")
        if training and impl == "hoisted":     # the backward of Cell.rec and _gradients
            for cell in self.cells:
                cell.taps = []
        self.attention = CausalAttention(H) if attention else None
        self.softmax_w = build_weight([H, V], "softmax_w")
        self.softmax_b = build_weight([V], "softmax_b", initializer=tf1.zeros_initializer())

        # State: a tuple per layer (LSTM (c, h), GRU/RNN h), plus, when sampling with
        # attention, the rolling buffer (outputs [B, L, H], filled mask [B, L]).  Feed any
        # of it (see state_feed) to carry it on from one run to the next.
        rnn_state = tuple(c.zero_state(B) for c in self.cells)
        attn_state = ((tf.zeros([B, attn_length, H]), tf.zeros([B, attn_length]))
                      if attention and infer else ())
        self.initial_state = (rnn_state, attn_state)
        use_dropout = not infer and cfg.get("dropout", field("dropout").fresh) > 0
        self.outputs, self.final_state = self.forward(
            self.input_data, self.initial_state, self.keep_prob if use_dropout else None)
        with tf.name_scope("softmax"):
            self.logits = tf.matmul(self.outputs, self.softmax_w) + self.softmax_b  # [B*T, V]
            self.probs = tf.nn.softmax(self.logits)
            labels = tf.reshape(self.targets, [-1])                             # [B*T]
            loss = softmax_cross_entropy(self.logits, labels)
            self.cost = tf.reduce_mean(loss)    # mean cross-entropy per character (nats)
            self.row_cost = tf.reduce_mean(tf.reshape(loss, [B, T]), 1)     # [B], per row

        self._bookkeeping(cfg)
        # --sampled_softmax S: training minimises a sampled softmax over S candidates;
        # self.cost stays the full softmax (validation, reports, sampling).
        self.sampled = training and 0 < sampled_size(cfg) < V
        with tf.name_scope("sampled"):
            self.train_cost = (sampled_cost(self.softmax_w, self.softmax_b, self.outputs, labels,
                                            sampled_size(cfg)) if self.sampled else self.cost)
        if training:
            self._optimizer(cfg, replicas)

    def _bookkeeping(self, cfg):
        """Step, learning rate, epoch, batch pointer and best validation loss: saved in
        the checkpoint so --keep resumes exactly; their assign ops created once, here (the
        training loop only runs them)."""
        self.global_step = tf1.train.get_or_create_global_step()
        self.lr = tf1.get_variable("learning_rate", [], trainable=False,
                                   initializer=tf1.constant_initializer(
                                       cfg.get("learning_rate", field("learning_rate").fresh)))
        self.epoch = tf1.get_variable("epoch", [], tf.int64, trainable=False,
                                      initializer=tf1.zeros_initializer())
        self.batch_pointer = tf1.get_variable("batch_pointer", [], tf.int64, trainable=False,
                                              initializer=tf1.zeros_initializer())
        self.best_val_loss = tf1.get_variable("best_val_loss", [], trainable=False,
                                              initializer=tf1.constant_initializer(float("inf")))
        self.new_lr = tf1.placeholder(tf.float32, [], name="new_lr")
        self.lr_update = tf1.assign(self.lr, self.new_lr)
        self.new_epoch = tf1.placeholder(tf.int64, [], name="new_epoch")
        self.new_pointer = tf1.placeholder(tf.int64, [], name="new_pointer")
        self.new_best = tf1.placeholder(tf.float32, [], name="new_best")
        self.progress_update = tf.group(tf1.assign(self.epoch, self.new_epoch),
                                        tf1.assign(self.batch_pointer, self.new_pointer))
        self.best_update = tf1.assign(self.best_val_loss, self.new_best)

    def _optimizer(self, cfg, replicas=None):
        """Clipped Adam on the cost, and the finiteness check run before each save.  With
        replicas, Adam applies the mean of that many workers' clipped gradients, once per
        step (the same variables: a checkpoint is the same either way)."""
        tvars = tf1.trainable_variables()
        grads = self._gradients(tvars)
        # The embedding's gradient comes as IndexedSlices (B*T rows).  Summed into a
        # dense [V, E] here, Adam updates it with one fused kernel; its sparse path ran
        # a dozen full-size ops over m and v anyway (TF1 Adam decays all rows), and the
        # step was 2-4 % slower (bench/speed.py).  The global norm is now the norm of
        # the summed gradient (as sliced, repeated characters' rows were counted apart).
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in grads]
        self._tvars, self._grads = tvars, grads      # (as computed, before clipping)
        grads, self.grad_norm = tf.clip_by_global_norm(grads, cfg.get("grad_clip", field("grad_clip").default))
        # Checked before each save, so no checkpoint ever holds inf/NaN weights.
        self.weights_finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(v)) for v in tvars])
        optimizer = tf1.train.AdamOptimizer(self.lr)
        if replicas:
            optimizer = tf1.train.SyncReplicasOptimizer(
                optimizer, replicas_to_aggregate=replicas, total_num_replicas=replicas)
        self.optimizer = optimizer
        self.train_op = optimizer.apply_gradients(zip(grads, tvars),
                                                  global_step=self.global_step)

    def _gradients(self, tvars):
        """d train_cost / d tvars.  The recurrent products' weight gradients come from the
        cells' taps (Cell.rec): per weight w, the gradients dP_t that reach its T products
        P_t = h_t x w, stacked, give dw = [h_1..h_T]^T x [dP_1..dP_T] in one product whose
        inner size is T*B (instead of T products of inner size B, summed), then flow to the
        variable w was cut from (its tf.split)."""
        taps = [tap for cell in self.cells for tap in (cell.taps or [])]
        products = [p for _, _, p in taps]
        grads = tf.gradients(self.train_cost, tvars + products)
        grads, d_products = grads[:len(tvars)], grads[len(tvars):]
        by_weight = {}
        for (w, h, _), dp in zip(taps, d_products):
            if dp is not None:
                _, hs, dps = by_weight.setdefault(w.ref(), (w, [], []))
                hs.append(h)
                dps.append(dp)
        for w, hs, dps in by_weight.values():
            with tf.name_scope("gradients/recurrent_weights"):
                dw = tf.matmul(tf.concat(hs, 0), tf.concat(dps, 0), transpose_a=True)
                to_vars = tf.gradients(w, tvars, grad_ys=dw)
            grads = [g if d is None else (d if g is None else g + d)
                     for g, d in zip(grads, to_vars)]
        return grads

    def forward(self, ids, state, keep_prob=None):
        """ids [B, T] -> (top-layer outputs [B*T, H] in batch-major order, final state);
        the logits are outputs x softmax_w + softmax_b."""
        H = self.config["rnn_size"]
        rnn_state, attn_state = state
        with tf.name_scope("embedding"):
            emb = tf.nn.embedding_lookup(self.word_embedding, tf.transpose(ids))  # [T, B, E]
        outputs, final_rnn = run_layers(emb, rnn_state, self.cells, keep_prob,
                                        hoisted=self.config.get("rnn_impl") != "plain")
        with tf.name_scope("outputs"):
            hs = tf.transpose(tf.stack(outputs), [1, 0, 2])                 # [B, T, H]
        if self.attention is not None and attn_state:      # sampling: rolling buffer
            out, buf, valid = self.attention.over_buffer(hs[:, 0], *attn_state)
            hs, attn_state = out[:, None, :], (buf, valid)
        elif self.attention is not None:                   # training: causal window
            hs = self.attention.over_window(hs)
        with tf.name_scope("outputs"):
            return tf.reshape(hs, [-1, H]), (final_rnn, attn_state)

    def step(self, x, state):
        """One character at batch 1 (infer=True), the lean way: x [] int32, state as
        initial_state -> (h [H], the top layer's output, new state); no [B, T] reshapes
        or transposes.  The logits are h @ softmax_w + softmax_b: the sampling engine
        takes that product in numpy, where a [1, H] x [H, V] product costs about 60 us
        at V = 6,000 and TensorFlow's batch-1 matmul 5x more (AMD EPYC, 2 cores)."""
        rnn_state, attn_state = state
        inp = tf.gather(self.word_embedding, x[None])                    # [1, E]
        new = []
        for cell, st in zip(self.cells, rnn_state):
            st = cell.step(cell.project_inputs(inp), st)
            new.append(st)
            inp = cell.output(st)                                        # [1, H]
        if self.attention is not None:
            inp, buf, valid = self.attention.over_buffer(inp, *attn_state)
            attn_state = (buf, valid)
        return inp[0], (tuple(new), attn_state)

    # -- helpers used by train.py and sample.py ----------------------------------------

    def state_feed(self, state_value):
        """feed_dict entries that carry `state_value` (as returned for final_state) into
        initial_state; works for any cell type and for the attention buffer."""
        return dict(zip(nest.flatten(self.initial_state), nest.flatten(state_value)))

    def set_lr(self, sess, value):
        sess.run(self.lr_update, {self.new_lr: value})

    def set_progress(self, sess, epoch, pointer):
        sess.run(self.progress_update, {self.new_epoch: epoch, self.new_pointer: pointer})

    def set_best(self, sess, value):
        sess.run(self.best_update, {self.new_best: value})


def count_params(variables=None):
    """Number of scalars in `variables` (default: all trainable variables of the graph)."""
    import numpy as np
    import tensorflow as tf
    if variables is None:
        variables = tf.compat.v1.trainable_variables()
    return int(sum(np.prod(v.shape.as_list()) for v in variables))

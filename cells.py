"""The recurrent cells, one class each: a new cell type is one subclass of Cell here
(its kind, its gate count, build and step), and --rnncell, the memory check, the bench and
sampling take it from the registry.

TensorFlow is imported when a cell is first built, not with this module: config.py reads
the registry for --help, which must stay instant.
"""


class _Lazy:
    """A module attribute path (tensorflow, tensorflow.compat.v1) imported on first use."""

    def __init__(self, path):
        self._path = path

    def __getattr__(self, name):
        import importlib
        module = importlib.import_module("tensorflow")
        for part in self._path.split(".")[1:]:
            module = getattr(module, part)
        return getattr(module, name)


tf = _Lazy("tensorflow")
tf1 = _Lazy("tensorflow.compat.v1")


class Cell:
    """One recurrent layer with weights of its own; a subclass per cell type, registered
    by its `kind` with its gate count GATES (its kernel is [in + H, GATES * H]): --rnncell's
    choices, the memory check and the bench's FLOP count all read the registry
    (config.CELL_GATES), so adding a cell type is one subclass in this file.

    A subclass builds its weights in `build(n_in)` and gives the input part of its kernel
    (w_x, b_x: [in, G*H], [G*H]) so all time steps' inputs are multiplied in one matmul
    outside the recurrence; `step` takes that projected input.  State: a single [B, H]
    tensor, or a tuple (LSTM's (c, h)); code outside never unpacks it."""

    kind = None
    GATES = None
    REGISTRY = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        Cell.REGISTRY[cls.kind] = cls

    @staticmethod
    def make(kind, num_units, input_size, index):
        if kind not in Cell.REGISTRY:
            raise ValueError(f"rnncell must be one of {tuple(Cell.REGISTRY)}, not {kind!r}")
        return Cell.REGISTRY[kind](num_units, input_size, index)

    def __init__(self, num_units, input_size, index):
        self.H, self.input_size = num_units, input_size
        self.taps = None             # a list while a training graph is built: see rec()
        self._w_t = {}
        self.glorot = tf1.glorot_uniform_initializer()
        with tf1.variable_scope(f"layer_{index}/{self.kind}"):
            self.build(input_size + num_units)

    def zero_state(self, batch_size):
        return tf.zeros([batch_size, self.H], tf.float32)

    def output(self, state):
        return state

    def step_plain(self, x, state):
        """The step from the raw input x [B, in] (rnn_impl='plain'); a cell type may give
        the straightforward form of its own, as TF's cells compute it."""
        return self.step(self.project_inputs(x), state)

    def rec(self, h, w):
        """A recurrent product h [B, n] x w [n, K], as every step's recurrence takes it.

        While a training graph is built (self.taps a list), the product's gradient stops at
        h: the step's weight gradient, a [n, B] x [B, K] product per step (K = B = 32 in
        the base config: about a quarter of the matmul speed of the forward pass), is made
        by Model._gradients for all T steps at once, [n, T*B] x [T*B, K], from the tapped
        (w, h, product) and the gradients that reach the products."""
        if self.taps is None:
            return tf.matmul(h, w)
        w_t = self.transposed(w)

        @tf.custom_gradient
        def product(h):
            def grad(dp, variables=()):
                # dh = dp x w^T from w^T stored [K, n]: TF's own MatMul gradient
                # (transpose_b) ran 2.6-3.6x slower at [32, 1024] x [1024, 256].  w's
                # variable gets its gradient from the taps, not here.
                return tf.matmul(dp, w_t), [None] * len(variables)
            return tf.matmul(h, w), grad
        p = product(h)
        self.taps.append((w, h, p))
        return p

    def transposed(self, w):
        """w^T, made once per graph (per training step), for the backward's products.
        (A Snapshot between: grappler would fold a bare transpose back into the MatMul
        as transpose_b, the slow layout.)"""
        key = w.ref()
        if key not in self._w_t:
            self._w_t[key] = tf.raw_ops.Snapshot(input=tf.transpose(w))
        return self._w_t[key]

    def project_inputs(self, x):
        """x [N, in] -> input contribution of all N (time x batch) rows [N, G*H]."""
        return tf.matmul(x, self.w_x) + self.b_x

    def _kernel(self, n_in, gates):
        """kernel [n_in, G*H] and bias [G*H], split once per graph into the input part
        [in, G*H] and the recurrent part [H, G*H] (tf.split, not slicing: its gradient
        is one concat, not zero-padded copies)."""
        zeros = tf1.zeros_initializer()
        self.kernel = build_weight([n_in, gates * self.H], "kernel", initializer=self.glorot)
        self.bias = build_weight([gates * self.H], "bias", initializer=zeros)
        self.w_x, self.w_h = tf.split(self.kernel, [self.input_size, self.H])
        self.b_x = self.bias


class LSTMCell(Cell):
    kind, GATES = "lstm", 4

    def build(self, n_in):
        self._kernel(n_in, self.GATES)

    def zero_state(self, batch_size):
        z = tf.zeros([batch_size, self.H], tf.float32)
        return (z, tf.zeros([batch_size, self.H], tf.float32))

    def output(self, state):
        return state[1]

    @staticmethod
    def _gates(gates, c):
        i, j, f, o = tf.split(gates, 4, axis=1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(j)     # forget bias 1
        return (c, tf.sigmoid(o) * tf.tanh(c))

    def step(self, xp, state):
        c, h = state
        return self._gates(xp + self.rec(h, self.w_h), c)

    def step_plain(self, x, state):
        """The same step computed as TF's own cells do, [x, h] x kernel at every step.
        Kept as the straightforward reference that bench/speed.py compares against."""
        c, h = state
        return self._gates(tf.matmul(tf.concat([x, h], 1), self.kernel) + self.bias, c)


class GRUCell(Cell):
    kind, GATES = "gru", 3          # reset and update gates [.., 2H], candidate [.., H]

    def build(self, n_in):
        H = self.H
        with tf1.variable_scope("gates"):
            self.g_kernel = build_weight([n_in, 2 * H], "kernel", self.glorot)
            # bias 1: start with gates open (remember), as TF's GRUCell does
            self.g_bias = build_weight([2 * H], "bias", initializer=tf1.ones_initializer())
        with tf1.variable_scope("candidate"):
            self.c_kernel = build_weight([n_in, H], "kernel", initializer=self.glorot)
            self.c_bias = build_weight([H], "bias", initializer=tf1.zeros_initializer())
        g_x, self.w_hg = tf.split(self.g_kernel, [self.input_size, H])      # [H, 2H]
        c_x, self.w_hc = tf.split(self.c_kernel, [self.input_size, H])      # [H, H]
        self.w_x = tf.concat([g_x, c_x], 1)
        self.b_x = tf.concat([self.g_bias, self.c_bias], 0)

    def step(self, xp, h):
        xg, xc = tf.split(xp, [2 * self.H, self.H], axis=1)
        r, u = tf.split(tf.sigmoid(xg + self.rec(h, self.w_hg)), 2, axis=1)
        cand = tf.tanh(xc + self.rec(r * h, self.w_hc))
        return u * h + (1.0 - u) * cand

    def step_plain(self, x, h):
        ru = tf.sigmoid(tf.matmul(tf.concat([x, h], 1), self.g_kernel) + self.g_bias)
        r, u = tf.split(ru, 2, axis=1)
        cand = tf.tanh(tf.matmul(tf.concat([x, r * h], 1), self.c_kernel) + self.c_bias)
        return u * h + (1.0 - u) * cand


class RNNCell(Cell):
    kind, GATES = "rnn", 1

    def build(self, n_in):
        self._kernel(n_in, self.GATES)

    def step(self, xp, h):
        return tf.tanh(xp + self.rec(h, self.w_h))

    def step_plain(self, x, h):
        return tf.tanh(tf.matmul(tf.concat([x, h], 1), self.kernel) + self.bias)


def build_weight(shape, name, initializer=None, dtype=None):
    """A trainable tf.compat.v1 variable in the current variable scope (the model's
    weights all come from here; the name is the checkpoint key)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    return tf1.get_variable(name, shape=shape, dtype=dtype or tf.float32,
                            initializer=initializer)

"""Training on several processes or machines with TensorFlow 1's own distributed runtime.

A cluster is described the way TensorFlow's tools read it, in TF_CONFIG (or a file given
with --cluster holding the same JSON):

    {"cluster": {"ps": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]},
     "task": {"type": "worker", "index": 0}}

Every task runs `python train.py` with the same flags.  A parameter server ("ps") holds
the variables (tf.compat.v1.train.Server + replica_device_setter); each worker trains on
its own contiguous stretch of each epoch's batches and hands its gradient to a
SyncReplicasOptimizer, which applies the mean of all workers' gradients once per step
(synchronous: every worker's gradient of a step is taken on the same weights).  Worker 0
is the chief: it alone initializes or restores the variables, validates, and writes the
model directory (config, vocabulary, checkpoints, log), which is an ordinary one.  (A
"chief" job, TF2's spelling, counts as worker 0.)

This module: reading and checking the description (no TensorFlow), and ClusterRun, the
runtime side (the server, device placement, the synchronous optimizer's set-up, the stop
signal and the end of the parameter servers), used by train.py.
"""
import errno
import json
import socket
import time
from dataclasses import dataclass

from utils import UserError

# Settings every worker must share with the chief (else their gradients do not add up, or
# they stop at different steps); the rest (learning rate, --patience, --max_minutes,
# --save_every, ...) only the chief uses.
SAME_ON_EVERY_WORKER = ("vocab_size", "rnncell", "num_layers", "rnn_size", "embedding_size",
                        "attention", "batch_size", "seq_length", "val_frac", "max_vocab",
                        "num_epochs", "max_steps", "sampled_softmax", "dropout",
                        "reset_chars", "grad_clip", "text_sha256")


@dataclass(frozen=True)
class Cluster:
    """A checked cluster description: the parameter servers' and workers' addresses
    (worker 0 is the chief) and which of them this process is."""
    ps: tuple
    workers: tuple
    task_type: str          # "ps" or "worker"
    index: int
    source: str             # where it was read, for messages

    @property
    def is_ps(self):
        return self.task_type == "ps"

    @property
    def is_chief(self):
        return self.task_type == "worker" and self.index == 0

    @property
    def address(self):
        return (self.ps if self.is_ps else self.workers)[self.index]

    @property
    def name(self):
        if self.is_ps:
            return f"ps {self.index}"
        return f"worker {self.index}" + (" (the chief)" if self.is_chief else "")

    def spec(self):
        """{job: [address, ...]} for tf.compat.v1.train.ClusterSpec."""
        return {"ps": list(self.ps), "worker": list(self.workers)}


def check_address(a, where):
    """'host:port' with a port from 1 to 65535."""
    host, sep, port = a.rpartition(":") if isinstance(a, str) else ("", "", "")
    if not (sep and host and port.isdigit() and 1 <= int(port) <= 65535):
        raise UserError(f"{where}: {a!r} is not an address host:port (port 1-65535)",
                        code=2)
    return a


def parse_cluster(text, source):
    """The JSON of TF_CONFIG (or a --cluster file) -> a Cluster, or None when it names no
    cluster (an empty or absent "cluster": one process, as without it).  Anything else
    wrong is one UserError (exit 2) naming what and where."""
    try:
        conf = json.loads(text)
    except ValueError as e:
        raise UserError(f"{source} is not JSON ({e}); see README, 'Training on a cluster'",
                        code=2)
    if not isinstance(conf, dict):
        raise UserError(f"{source} must be a JSON object with \"cluster\" and \"task\"",
                        code=2)
    jobs = conf.get("cluster") or {}
    if not jobs:
        return None
    if not isinstance(jobs, dict):
        raise UserError(f"{source}: \"cluster\" must map job names to address lists", code=2)
    unknown = sorted(set(jobs) - {"ps", "worker", "chief"})
    if unknown:
        raise UserError(f"{source}: job {unknown[0]!r} is not one train.py runs (ps, "
                        f"worker, chief)", code=2)
    for job, addrs in jobs.items():
        if not isinstance(addrs, list) or not addrs:
            raise UserError(f"{source}: job {job!r} needs a non-empty list of host:port",
                            code=2)
        for a in addrs:
            check_address(a, f"{source}, job {job!r}")
    if len(jobs.get("chief", [])) > 1:
        raise UserError(f"{source}: a cluster has one chief, not {len(jobs['chief'])}", code=2)
    ps = tuple(jobs.get("ps", ()))
    workers = tuple(jobs.get("chief", ())) + tuple(jobs.get("worker", ()))
    if not ps:
        raise UserError(f"{source}: the cluster has no \"ps\" job: a parameter server holds "
                        f"the variables", code=2)
    if not workers:
        raise UserError(f"{source}: the cluster has no \"worker\" job", code=2)
    seen = set()
    for a in ps + workers:
        if a in seen:
            raise UserError(f"{source}: {a} is given to two tasks", code=2)
        seen.add(a)
    task = conf.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise UserError(f"{source}: \"task\" must say which task this process is, e.g. "
                        f"{{\"type\": \"worker\", \"index\": 0}}", code=2)
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in jobs:
        raise UserError(f"{source}: task type {kind!r} is not a job of the cluster "
                        f"({', '.join(sorted(jobs))})", code=2)
    if type(index) is not int or not 0 <= index < len(jobs[kind]):
        raise UserError(f"{source}: task index {index!r} is not in job {kind!r}, whose "
                        f"tasks are 0 to {len(jobs[kind]) - 1}", code=2)
    if kind == "chief":
        kind, index = "worker", 0
    elif kind == "worker" and "chief" in jobs:
        index += 1
    return Cluster(ps, workers, kind, index, source)


def read_cluster(path, environ):
    """The cluster this process belongs to: --cluster FILE if given, else TF_CONFIG, else
    None (one process)."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise UserError(f"--cluster {path}: cannot read it ({e.strerror or e})", code=2)
        return parse_cluster(text, f"--cluster {path}")
    text = environ.get("TF_CONFIG", "").strip()
    return parse_cluster(text, "TF_CONFIG") if text else None


def stretch(num_batches, workers, index):
    """Worker `index`'s batches of an epoch: [start, stop), a contiguous stretch, the
    same length for every worker (a synchronous step needs one gradient from each), so
    the last num_batches % workers batches are left out.  Contiguous, so the RNN state
    carried from batch to batch stays the text's own."""
    per = num_batches // workers
    if per == 0:
        raise UserError(f"the text has {num_batches} training batches, fewer than the "
                        f"{workers} workers: use a longer text, a smaller --batch_size or "
                        f"--seq_length, or fewer workers", code=2)
    return index * per, (index + 1) * per


def take_stretch(data, workers, index):
    """Keep only worker `index`'s stretch of data's training batches (data: a
    preprocess.TextParser, or anything with x_batches, y_batches and num_batches)."""
    start, stop = stretch(data.num_batches, workers, index)
    data.x_batches, data.y_batches = data.x_batches[start:stop], data.y_batches[start:stop]
    data.num_batches = stop - start
    return start, stop


def shared_settings(config):
    """The settings of `config` (as written to config.pkl) that every worker shares."""
    return {k: config.get(k) for k in SAME_ON_EVERY_WORKER}


def settings_problem(mine, chiefs, name):
    """One line saying how this worker's settings differ from the chief's, or None."""
    for k in SAME_ON_EVERY_WORKER:
        if mine.get(k) != chiefs.get(k):
            if k == "text_sha256":
                return (f"{name} reads another text than the chief (sha256 "
                        f"{str(mine.get(k))[:12]} against {str(chiefs.get(k))[:12]}): give "
                        f"every worker the same lyrics.txt")
            return (f"{name} has {k} {mine.get(k)!r} where the chief has {chiefs.get(k)!r}: "
                    f"start every task with the same flags")
    return None


def check_port_free(cluster):
    """This task's port is free to listen on; else one line (a second cluster, or a task
    started twice)."""
    port = int(cluster.address.rpartition(":")[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("", port))
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise UserError(f"{cluster.name}: port {port} ({cluster.address} in "
                            f"{cluster.source}) is "
                            f"{'in use' if e.errno == errno.EADDRINUSE else 'not allowed'}: "
                            f"stop what holds it, or give the task another address")
        raise
    finally:
        s.close()


def answers(address, timeout=1.0):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(addresses, seconds, what, cluster, sleep=time.sleep, clock=time.monotonic):
    """Wait until every (name, address) answers a TCP connection, at most `seconds`; else
    one line naming the first that does not."""
    deadline = clock() + seconds
    pending = list(addresses)
    while True:
        pending = [(n, a) for n, a in pending if not answers(a)]
        if not pending:
            return
        if clock() >= deadline:
            n, a = pending[0]
            raise UserError(f"{cluster.name}: the cluster did not form within {seconds:g} s "
                            f"(--cluster_wait): {n} at {a} does not answer; start it "
                            f"({what}) or correct its address in {cluster.source}")
        sleep(0.5)


class ClusterRun:
    """The runtime side of a cluster task, after TensorFlow is imported: this task's
    server, where the graph's ops go, the synchronous optimizer's set-up, the stop
    signal, and the parameter servers' end."""

    def __init__(self, tf, cluster, wait_seconds, session_config):
        self.tf, self.cluster, self.wait = tf, cluster, wait_seconds
        tf1 = tf.compat.v1
        check_port_free(cluster)
        self.spec = tf1.train.ClusterSpec(cluster.spec())
        self.config = session_config
        # a worker talks to the parameter servers and itself only (a slow or absent
        # fellow worker cannot hold up its session); a parameter server to itself
        del self.config.device_filters[:]
        self.config.device_filters.extend(
            [f"/job:ps/task:{cluster.index}"] if cluster.is_ps else
            ["/job:ps", f"/job:worker/task:{cluster.index}"])
        self.server = tf1.train.Server(self.spec, job_name=cluster.task_type,
                                       task_index=cluster.index, config=self.config,
                                       start=True)
        self.stopped = False

    # -- the graph ---------------------------------------------------------------------

    def device_setter(self):
        """Variables on the parameter servers (round robin), every other op here."""
        return self.tf.compat.v1.train.replica_device_setter(
            cluster=self.spec, worker_device=f"/job:worker/task:{self.cluster.index}")

    def done_queues(self):
        """One queue per parameter server that each worker puts a token in when it ends."""
        tf1 = self.tf.compat.v1
        queues = []
        for i in range(len(self.cluster.ps)):
            with tf1.device(f"/job:ps/task:{i}"):
                queues.append(tf1.FIFOQueue(len(self.cluster.workers) * 2, self.tf.int32,
                                            shared_name=f"done_queue{i}",
                                            name=f"done_queue{i}"))
        return queues

    def build(self, model, settings):
        """The cluster's ops in the training graph (called inside device_setter(), after
        the model with replicas= is built): the chief's settings (a string the others
        check theirs against), the stop flag read after each step, and the op that
        releases workers waiting for a step that will not come."""
        tf, tf1 = self.tf, self.tf.compat.v1
        opt, n = model.optimizer, len(self.cluster.workers)
        with tf1.variable_scope("cluster"):
            # not in any collection: not saved, so the model directory is an ordinary one
            self.settings_var = tf1.Variable(json.dumps(settings, sort_keys=True),
                                             trainable=False, collections=[],
                                             name="settings")
            self.stop_var = tf1.Variable(False, trainable=False, collections=[],
                                         name="stop")
            self.init_cluster_vars = tf1.variables_initializer([self.settings_var,
                                                                self.stop_var])
            with tf.control_dependencies([model.train_op]):
                # read after the step's token: the chief sets it before the tokens that
                # release a waiting worker, so that worker sees it
                model.stop_after_step = tf.identity(self.stop_var.read_value())
            self.set_stop = tf1.assign(self.stop_var, True)
        self.release_tokens = opt.get_init_tokens_op(num_tokens=n)
        self.chief_init = opt.chief_init_op
        self.local_init = opt.local_step_init_op
        self.ready_for_local_init = opt.ready_for_local_init_op
        if self.cluster.is_chief:   # (the chief runs chief_init directly: not unused by mistake)
            getattr(self.ready_for_local_init, "mark_used", lambda: None)()
        self.queue_runner = opt.get_chief_queue_runner()
        if not self.cluster.is_chief:      # what a worker waits for the chief to set
            self.ready = tf1.report_uninitialized_variables(
                tf1.global_variables() + [self.settings_var, self.stop_var])

    # -- sessions ----------------------------------------------------------------------

    def wait_for_servers(self):
        wait_for([(f"ps {i}", a) for i, a in enumerate(self.cluster.ps)], self.wait,
                 "python train.py with that task's TF_CONFIG", self.cluster)

    def chief_session(self, graph):
        """The chief's session on its server (train.py then initializes or restores the
        variables as one process does, and calls chief_started)."""
        self.wait_for_servers()
        return self.tf.compat.v1.Session(self.server.target, graph=graph, config=self.config)

    def chief_started(self, sess):
        """After the variables are set: the settings others check, and the thread that
        applies the summed gradients (no tokens at the start: every step, the first too,
        waits for a gradient from each worker)."""
        sess.run([self.init_cluster_vars, self.chief_init])
        self.coord = self.tf.compat.v1.train.Coordinator()
        self.threads = self.queue_runner.create_threads(sess, coord=self.coord, daemon=True,
                                                        start=True)

    def worker_session(self, graph, my_settings):
        """A non-chief worker's session, once the chief has set the variables (at most
        --cluster_wait seconds), with its settings checked against the chief's."""
        tf1 = self.tf.compat.v1
        self.wait_for_servers()
        manager = tf1.train.SessionManager(
            graph=graph, ready_op=self.ready, ready_for_local_init_op=self.ready_for_local_init,
            local_init_op=self.local_init, recovery_wait_secs=0.5)
        sess = manager.wait_for_session(self.server.target, config=self.config,
                                        max_wait_secs=self.wait)
        if sess is None:
            raise UserError(f"{self.cluster.name}: the chief (worker 0 at "
                            f"{self.cluster.workers[0]}) did not set up the model within "
                            f"{self.wait:g} s (--cluster_wait): start it, or look at its "
                            f"output for why it stopped")
        chiefs = json.loads(sess.run(self.settings_var).decode("utf-8"))
        problem = settings_problem(my_settings, chiefs, self.cluster.name)
        if problem:
            sess.close()
            raise UserError(problem, code=2)
        return sess

    def step_options(self):
        """RunOptions of a training step: a step waits at most --cluster_wait seconds for
        the other workers' gradients."""
        return self.tf.compat.v1.RunOptions(timeout_in_ms=int(self.wait * 1000))

    def stop_workers(self, sess):
        """The chief ends the run: set the stop flag, then put a token in for every worker,
        so one waiting for a step that will not come ends it (its gradient is never
        applied) and reads the flag."""
        if self.stopped:
            return
        self.stopped = True
        opts = self.tf.compat.v1.RunOptions(timeout_in_ms=5000)
        try:
            sess.run(self.set_stop, options=opts)
            sess.run(self.release_tokens, options=opts)
        except self.tf.errors.OpError:
            pass        # the parameter server is gone: nobody is waiting on it

    def finish(self, sess):
        """This worker has ended: close its session, then tell the parameter servers (best
        effort).  In that order: a parameter server stops once every worker has told it,
        and a session closed after that waits on a server that is gone."""
        tf, tf1 = self.tf, self.tf.compat.v1
        if self.cluster.is_chief:
            self.coord.request_stop()
        sess.close()
        graph = tf.Graph()
        with graph.as_default():
            done = [q.enqueue(1) for q in self.done_queues()]
        opts = tf1.RunOptions(timeout_in_ms=3000)
        with tf1.Session(self.server.target, graph=graph, config=self.config) as tell:
            for op in done:
                try:
                    tell.run(op, options=opts)
                except tf.errors.OpError:
                    pass


def serve_ps(tf, cluster, wait_seconds, session_config):
    """A parameter server: serve the variables until every worker has said it ended, or
    --cluster_wait seconds after the first did (the others stopped without saying), or a
    signal.  Returns the exit code."""
    import signal
    tf1 = tf.compat.v1
    run = ClusterRun(tf, cluster, wait_seconds, session_config)
    n = len(cluster.workers)
    graph = tf.Graph()
    with graph.as_default():
        queue = run.done_queues()[cluster.index]
        take = queue.dequeue()
    graph.finalize()
    got = []

    def on_signal(signum, frame):
        got.append(signal.Signals(signum))
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"train: {cluster.name} serving at {cluster.address} for {n} worker"
          f"{'s' if n > 1 else ''}", flush=True)
    ended, first = 0, None
    opts = tf1.RunOptions(timeout_in_ms=1000)
    with tf1.Session(run.server.target, graph=graph, config=run.config) as sess:
        while ended < n:
            if got:
                print(f"train: {cluster.name}: {got[0].name}: stopped", flush=True)
                return 128 + got[0]
            if first is not None and time.monotonic() - first > wait_seconds:
                print(f"train: {cluster.name}: {n - ended} of {n} workers did not say they "
                      f"ended within {wait_seconds:g} s of the first; stopped", flush=True)
                return 1
            try:
                sess.run(take, options=opts)
            except tf.errors.DeadlineExceededError:
                continue
            ended += 1
            first = first if first is not None else time.monotonic()
    print(f"train: {cluster.name}: every worker has ended; stopped", flush=True)
    return 0


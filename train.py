"""Train the character model on data/lyrics.txt.

    python train.py --rnncell lstm
    python train.py --keep            # resume where the last run stopped
    python train.py --init_from save/base --save_dir save/mine   # fine-tune a base model

Writes save/config.pkl, save/words_vocab.pkl, checkpoints save/model.ckpt-<step> (the last
five, plus one an hour) and save/best.ckpt-<step> (lowest validation loss), the log
log/<timestamp>.txt that analysis/plot.py reads, and TensorBoard events in
log/<timestamp>/.
"""
import os
import sys
import time

from cluster import read_cluster, serve_ps as run_ps, shared_settings, take_stretch
from config import CELL_GATES, add_flags, config_names, run_defaults
from finetune import (check_resume, check_resume_data, load_base_weights, mix_base_text,
                      mix_rows, read_base, read_base_weights)
from modeldir import (DirLock, clear_model, drop_if_only_lock, existing_model,
                      model_checkpoints, resume_checkpoint, tf_path, write_model_files)
from presets import PRESETS
from tfenv import cpu_has_bf16, cpu_text, import_tensorflow, session_config
from training import Fit, NonFinite
from trainlog import LOG_MACHINE, append_log, log_filename
from utils import (ArgumentParser, HelpFormatter, UserError, check_dir_flag, run_main,
                   writable_dir)

# Defaults that depend on the run: a fresh model, a fine-tuned one (--init_from; measured
# on 元曲 held out of the base, README "A base model"), or a resumed one (its own values).
DEFAULTS = run_defaults("fresh")
FINE_TUNE_DEFAULTS = run_defaults("fine_tune")


def build_parser():
    """train.py's flags: every field of config.FIELDS."""
    p = ArgumentParser(
        description="Train the character-level lyrics model (TF1-style graph + Session).",
        formatter_class=HelpFormatter)
    return add_flags(p)


# ------------------------------------------------------------------------- save_dir


def explicit_flags(argv):
    """The dests of the flags given on the command line (not left at their default)."""
    p, unset = build_parser(), object()
    p.set_defaults(**{a.dest: unset for a in p._actions})
    return {k for k, v in vars(p.parse_args(argv)).items() if v is not unset}


def training_bytes(args):
    """Memory the model's training needs at least: every weight 4 times (itself, its
    gradient and Adam's two moments), float32."""
    V, E, H, L = args.vocab_size, args.embedding_size, args.rnn_size, args.num_layers
    gates = CELL_GATES[args.rnncell]
    layers = sum(gates * H * ((E if i == 0 else H) + H + 1) for i in range(L))
    return 16 * (V * E + layers + H * V + V)


def check_memory(args):
    """An architecture far beyond this machine's memory is one line before TensorFlow
    tries (--rnn_size 1000000 ended in a traceback from deep inside it)."""
    need = training_bytes(args)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):       # not POSIX: let TensorFlow say
        return
    if need > have:
        raise UserError(f"{args.rnncell} {args.num_layers}x{args.rnn_size}, embedding "
                        f"{args.embedding_size}, {args.vocab_size:,} characters needs at "
                        f"least {need / 2**30:,.1f} GiB to train and this machine has "
                        f"{have / 2**30:,.1f} GiB: lower --rnn_size, --num_layers or "
                        f"--embedding_size", code=2)


def main(argv=None):
    start_time = time.time()
    args = build_parser().parse_args(argv)
    args.start_time = start_time
    args.val_split = "blocks"       # how the held-out part is chosen (--keep: the model's)
    explicit = explicit_flags(argv)
    args.preset_keys = set()
    for k, v in PRESETS[args.preset].items() if args.preset else ():
        if k not in explicit:        # as if typed, after the flags that were typed
            setattr(args, k, v)
            explicit.add(k)
            args.preset_keys.add(k)
    if args.keep and args.overwrite:
        raise UserError("--keep resumes and --overwrite starts afresh: pick one", code=2)
    args.cluster_task = cluster = read_cluster(args.cluster, os.environ)
    if cluster is not None:
        check_cluster_flags(args, cluster)
        if cluster.is_ps:
            return serve_ps(args, cluster)
        if not cluster.is_chief:          # writes nothing: no save_dir, no log, no lock
            return start_worker(args, explicit, cluster)
    check_dir_flag(args.save_dir, "--save_dir")
    check_dir_flag(args.log_dir, "--log_dir")
    writable_dir(args.log_dir, "--log_dir")

    # The lock comes before anything is decided about save_dir: a second train.py started
    # a moment later is refused here, instead of finding the directory still empty and
    # writing its model over the first one's when that one has finished.  A directory made
    # here is removed again if the run ends before writing anything into it.
    made = not os.path.isdir(args.save_dir)
    os.makedirs(args.save_dir, exist_ok=True)
    args.lock = DirLock(args.save_dir, "train.py")
    try:
        return start(args, explicit)
    except BaseException:
        if made:
            drop_if_only_lock(args.save_dir)
        raise
    finally:
        args.lock.release()


def check_cluster_flags(args, cluster):
    """What a cluster's task cannot do (one line, exit 2)."""
    if cluster.is_ps:
        return
    if args.init_from or args.mix_base:
        raise UserError(f"{cluster.name}: a cluster trains a model from scratch or resumes "
                        f"one (--keep); fine-tune (--init_from, --mix_base) in one process",
                        code=2)
    if args.overwrite and not cluster.is_chief:
        args.overwrite = False      # only the chief's directory is written


def serve_ps(args, cluster):
    """A parameter server: it reads no text and writes nothing (cluster.serve_ps)."""
    tf = import_tensorflow(cpu=True)
    return run_ps(tf, cluster, args.cluster_wait, session_config())


def start(args, explicit):
    """Everything after the flags, under save_dir's lock: what this run starts from and
    its data (read before anything is written), the graph, the directory's files, the
    session begun one of three ways (begin_fresh, begin_keep, begin_from_base), then the
    epoch loop (Fit).  On a cluster this is the chief (worker 0)."""
    origin = read_origin(args, explicit)
    data = read_data(args, explicit, origin)
    tf = import_tensorflow(cpu=args.cpu)
    run = join_cluster(tf, args)
    g = build_graph(tf, args, run, data)
    if args.init_from:        # read and checked before save_dir is touched
        origin.weights = read_base_weights(tf, origin.ckpt, g.weights)
    gpus = tf.config.list_physical_devices("GPU")
    device = (f"GPU ({', '.join(x.name for x in gpus)})" if gpus else
              "CPU (--cpu)" if args.cpu else "CPU (no GPU visible)")
    print(f"train: device {device}")

    # From here on save_dir is written (by this process only: main() holds its lock).
    if args.keep:             # chosen before config.pkl is rewritten: a failure changes nothing
        origin.resume = resume_point(tf, args, g, data)
    if args.overwrite and not args.keep and existing_model(args.save_dir):
        clear_model(args.save_dir)
    config = write_config(args, data, origin)
    if args.bf16 and gpus:
        print("train: --bf16 is for CPUs; ignored on the GPU")
    elif args.bf16 and not cpu_has_bf16():
        print("train: warning: this CPU has no native bfloat16 (AVX512-BF16/AMX); --bf16 "
              "may be slower than float32", file=sys.stderr)
    if run is None:
        sess = tf.compat.v1.Session(graph=g.graph,
                                    config=session_config(args.bf16 and not gpus))
    else:
        sess = run.chief_session(g.graph)
    if args.keep:
        begun = begin_keep(sess, args, g, origin.resume)
    elif args.init_from:
        begun = begin_from_base(sess, g, data, origin)
    else:
        begun = begin_fresh(sess, g)
    if run is not None:
        run.chief_started(sess)

    os.makedirs(args.log_dir, exist_ok=True)
    log_path = log_filename(args.log_dir)
    append_log(log_path, f"{LOG_MACHINE} {os.cpu_count()} cores, {cpu_text()}",
               config=config)
    tb = tf.compat.v1.summary.FileWriter(os.path.splitext(log_path)[0], graph=g.graph)
    print(f"train: {args.rnncell} {args.num_layers}x{args.rnn_size}, embedding "
          f"{args.embedding_size}{', attention' if args.attention else ''}: "
          f"{g.n_params:,} parameters; log {log_path}")
    try:
        return fit(tf, args, data, sess, g, log_path, tb, begun, run)
    except NonFinite as e:
        print(f"train: error: {e}; stopped without saving: the checkpoints saved before in "
              f"{args.save_dir}/ are kept. Lower --learning_rate (now {args.learning_rate:g}) "
              f"or --grad_clip.",
              file=sys.stderr)
        return 1
    finally:
        tb.close()
        sess.close()


def fit(tf, args, data, sess, g, log_path, tb, begun, run):
    """The epoch loop (training.Fit); on a cluster, what ends a task's part in it: the
    chief releases the other workers when it stops for any reason, a step that waits
    too long or loses the parameter servers is one line (UserError), and every worker
    tells the parameter servers it has ended."""
    if run is None:
        return Fit(args, data, sess, g, log_path, tb, begun).run()
    name = run.cluster.name
    try:
        return Fit(args, data, sess, g, log_path, tb, begun, cluster=run).run()
    except tf.errors.DeadlineExceededError:
        others = "another worker" if run.cluster.is_chief else "the chief or another worker"
        saved = (f"the checkpoints in {args.save_dir}/ are kept" if run.cluster.is_chief
                 else "this worker writes nothing")
        raise UserError(f"{name}: no step completed for {args.cluster_wait:g} s "
                        f"(--cluster_wait): {others} has stopped or never joined; {saved}. "
                        f"Restart every task (with --keep to resume from the chief's last "
                        f"checkpoint)")
    except (tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.CancelledError) as e:
        raise UserError(f"{name}: lost the parameter server ({type(e).__name__}); restart "
                        f"every task, with --keep to resume from the chief's last "
                        f"checkpoint")
    finally:
        if run.cluster.is_chief:
            run.stop_workers(sess)
        run.finish(sess)


def join_cluster(tf, args):
    """This task's cluster.ClusterRun (its server started), or None for one process."""
    if args.cluster_task is None:
        return None
    from cluster import ClusterRun
    return ClusterRun(tf, args.cluster_task, args.cluster_wait,
                      session_config(args.bf16 and not tf.config.list_physical_devices("GPU")))


def start_worker(args, explicit, cluster):
    """A worker that is not the chief: the same text and flags as the chief (checked
    against the chief's once it has set up the model), its own stretch of the batches, a
    session on the parameter servers' variables; it writes nothing.  --keep: the chief
    restores; this worker starts where the restored step counters say."""
    keep, args.keep = args.keep, False
    args.seed += cluster.index          # its own dropout and candidate draws
    origin = read_origin(args, explicit)
    args.max_minutes = 0.0              # the chief decides when the run ends early
    data = read_data(args, explicit, origin, own_dir=False)
    tf = import_tensorflow(cpu=args.cpu)
    run = join_cluster(tf, args)
    g = build_graph(tf, args, run, data)
    mine = shared_settings(dict(vars(args), text_sha256=data.source_sha256))
    sess = run.worker_session(g.graph, mine)
    step, epoch, pointer = (int(v) for v in sess.run([g.model.global_step, g.model.epoch,
                                                      g.model.batch_pointer]))
    if pointer >= data.num_batches:
        epoch, pointer = epoch + 1, 0
    print(f"train: {cluster.name} joined at step {step}, epoch {epoch + 1}, batch {pointer}"
          + (" (resumed by the chief)" if keep else ""), flush=True)
    try:
        return fit(tf, args, data, sess, g, None, None, (epoch, pointer, float("inf")), run)
    except NonFinite as e:
        print(f"train: error: {cluster.name}: {e}", file=sys.stderr)
        return 1
    finally:
        sess.close()


def read_origin(args, explicit):
    """What this run starts from, read and checked before anything is written: a saved
    model's config (--keep), a base model's config, characters and checkpoint
    (--init_from), or nothing; then the defaults that depend on which."""
    from types import SimpleNamespace
    origin = SimpleNamespace(saved=None, chars=None, config=None, ckpt=None, weights=None,
                             resume=None)
    if args.init_from:
        origin.config, origin.chars, origin.ckpt = read_base(args, explicit)
    elif args.keep:
        origin.saved, origin.chars = check_resume(args, explicit)
    defaults = origin.saved if origin.saved is not None else (
        FINE_TUNE_DEFAULTS if args.init_from else DEFAULTS)
    for k in DEFAULTS:
        if getattr(args, k) is None:
            setattr(args, k, defaults.get(k, DEFAULTS[k]))
    return origin


def read_data(args, explicit, origin, own_dir=True):
    """The text as batches (preprocess.TextParser), checked against what it must match:
    the memory it needs, the saved model (--keep), a model already in save_dir (own_dir:
    this process writes save_dir).  On a cluster: only this worker's stretch of the
    training batches."""
    if args.mix_base:
        mix_rows(args, origin.saved)
    from preprocess import TextParser
    data = TextParser(args.data_dir, args.batch_size, args.seq_length, args.val_frac,
                      verbose=True, base_chars=origin.chars, val_split=args.val_split,
                      max_vocab=args.max_vocab)
    args.vocab_size = data.vocab_size
    check_memory(args)
    if origin.saved is not None:
        check_resume_data(args, origin.saved, data)
    elif own_dir and existing_model(args.save_dir) and not args.overwrite:
        raise UserError(f"{args.save_dir}/ already holds a trained model; resume it with "
                        f"--keep, train into another --save_dir, or pass --overwrite to "
                        f"replace it", code=2)
    mix_base_text(args, explicit, origin.saved, data)
    cluster = getattr(args, "cluster_task", None)
    if cluster is not None:
        take_stretch(data, len(cluster.workers), cluster.index)
    return data


def build_graph(tf, args, run=None, data=None):
    """The training graph, finalized: any op created later (in the loop) is a bug.  On a
    cluster (run: a cluster.ClusterRun) the variables live on the parameter servers, the
    optimizer averages the workers' gradients, and the cluster's own ops are added."""
    import contextlib
    from types import SimpleNamespace
    from seq2seq_rnn import Model
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), (tf1.device(run.device_setter()) if run is not None
                              else contextlib.nullcontext()):
        tf1.set_random_seed(args.seed)
        replicas = len(run.cluster.workers) if run is not None else None
        g = SimpleNamespace(graph=graph, model=Model(args, replicas=replicas))
        g.init = tf1.global_variables_initializer()
        g.saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=5,
                                  keep_checkpoint_every_n_hours=1, save_relative_paths=True)
        g.best_saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=1,
                                       save_relative_paths=True)
        g.weights = tf1.trainable_variables()
        g.all_variables = tf1.global_variables()
        from seq2seq_rnn import count_params
        g.n_params = count_params()
        if run is not None:
            run.build(g.model, shared_settings(dict(vars(args),
                                                    text_sha256=data.source_sha256)))
    graph.finalize()
    return g


def resume_point(tf, args, g, data):
    """--keep: (checkpoint, step, epoch, batch pointer) to resume from; refused when the
    model has already trained as far as --num_epochs / --max_steps ask."""
    ckpt = resume_checkpoint(args.save_dir, g.all_variables)
    reader = tf.train.load_checkpoint(tf_path(ckpt))
    step, epoch, pointer = (int(reader.get_tensor(n)) for n in
                            ("global_step", "epoch", "batch_pointer"))
    if pointer >= data.num_batches:
        epoch, pointer = epoch + 1, 0
    if getattr(args, "mix_dropped", False) and pointer:
        print(f"train: without the base's text the batches of an epoch differ: epoch "
              f"{epoch + 1} starts again from its first batch")
        pointer = 0
    if epoch >= args.num_epochs:
        raise UserError(f"--keep: the model in {args.save_dir}/ has already trained "
                        f"{epoch} epochs; raise --num_epochs to train more", code=2)
    if args.max_steps and step >= args.max_steps:
        raise UserError(f"--keep: the model in {args.save_dir}/ has already trained "
                        f"{step} steps; raise --max_steps to train more", code=2)
    return ckpt, step, epoch, pointer


def write_config(args, data, origin):
    """Write the model directory's files (modeldir.write_model_files) and return the
    config: train.py's flags (not whatever else is set on args), the vocabulary's size,
    how the held-out part was chosen, the text's hash, and the base it came from."""
    config = {k: getattr(args, k) for k in sorted(config_names())}
    config.update(vocab_size=args.vocab_size, val_split=args.val_split,
                  text_sha256=data.source_sha256)
    if args.init_from:
        config.update(init_from=os.path.abspath(args.init_from),
                      init_checkpoint=os.path.abspath(origin.ckpt),
                      base_vocab_size=len(origin.chars))
    elif origin.saved is not None:   # a resumed fine-tuning run still came from its base
        for k in ("init_from", "init_checkpoint", "base_vocab_size"):
            if k in origin.saved:
                config[k] = origin.saved[k]
    write_model_files(args.save_dir, config, data.chars, data.context, data.index_file)
    return config


def begin_fresh(sess, g):
    """A new model: initialized weights, from epoch 0.  Returns (epoch, batch pointer,
    best validation loss): where Fit starts."""
    sess.run(g.init)
    return 0, 0, float("inf")


def begin_from_base(sess, g, data, origin):
    """--init_from: a new model with every weight of the base loaded into it."""
    begun = begin_fresh(sess, g)
    load_base_weights(sess, g.weights, origin.weights)
    new = "".join(data.new_chars)
    print(f"train: fine-tuning from {origin.ckpt}: every weight loaded from the base; "
          f"{len(data.new_chars):,} characters of {data.input_file} are new to it"
          + (f" ({new[:30]}{'...' if len(new) > 30 else ''}): their embedding rows "
             f"and softmax columns start untrained" if new else ""))
    return begun


def begin_keep(sess, args, g, resume):
    """--keep: the saved model restored where it stopped (resume_point)."""
    ckpt, step, epoch, pointer = resume
    g.saver.restore(sess, tf_path(ckpt))
    best_val = float(sess.run(g.model.best_val_loss))
    # the Saver forgets across runs: tell it which of ours to rotate out later
    g.saver.recover_last_checkpoints([tf_path(p) for p in model_checkpoints(args.save_dir)])
    print(f"train: resumed {ckpt} at step {step}, epoch {epoch + 1}, batch {pointer}")
    return epoch, pointer, best_val


if __name__ == "__main__":
    run_main(main, "train.py", fast_exit=True)

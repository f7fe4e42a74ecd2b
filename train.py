"""Train the character model on data/lyrics.txt.

    python train.py --rnncell lstm
    python train.py --keep            # resume where the last run stopped

Writes save/config.pkl, save/words_vocab.pkl, checkpoints save/model.ckpt-<step> (the last
five, plus one an hour) and save/best.ckpt-<step> (lowest validation loss), the log
log/<timestamp>.txt that analysis/plot.py reads, and TensorBoard events in
log/<timestamp>/.
"""
import argparse
import math
import os
import signal
import sys
import time


from utils import (UserError, atomic_pickle, atomic_save_npy, atomic_write_bytes,
                   count_params, cpu_has_bf16, epoch_lines, import_tensorflow,
                   log_filename, logging, non_negative_int, perplexity, positive_float,
                   positive_int, run_main, safe_load_pickle, session_config, unit_float)

ARCH_FLAGS = ("rnncell", "num_layers", "rnn_size", "embedding_size", "attention")
# Flags whose change would make the saved batch pointer meaningless.
BATCH_FLAGS = ("batch_size", "seq_length", "val_frac")
SAVED_FILES = ("config.pkl", "words_vocab.pkl", "checkpoint", "checkpoint_best",
               "corpus.npy")
MODEL_MARKERS = ("checkpoint", "checkpoint_best")   # a trained model is there


def build_parser():
    p = argparse.ArgumentParser(
        description="Train the character-level lyrics model (TF1-style graph + Session).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data_dir", default="data", help="directory with lyrics.txt")
    g.add_argument("--save_dir", default="save", help="checkpoints, config and vocabulary")
    g.add_argument("--log_dir", default="log", help="text logs and TensorBoard events")
    g.add_argument("--val_frac", type=unit_float, default=0.05,
                   help="share of the text, from its end, held out for validation")
    g = p.add_argument_group("model")
    g.add_argument("--rnncell", choices=["rnn", "gru", "lstm"], default="lstm",
                   help="recurrent cell type")
    g.add_argument("--rnn_size", type=positive_int, default=128, help="units per layer")
    g.add_argument("--num_layers", type=positive_int, default=2, help="stacked layers")
    g.add_argument("--embedding_size", type=positive_int, default=100,
                   help="size of the character embedding")
    g.add_argument("--attention", action="store_true",
                   help="causal attention over the window (and a rolling buffer when "
                        "sampling)")
    g.add_argument("--dropout", type=unit_float, default=0.0,
                   help="dropout rate on each layer's output while training (0 = off)")
    g = p.add_argument_group("training")
    g.add_argument("--batch_size", type=positive_int, default=32, help="sequences per batch")
    g.add_argument("--seq_length", type=positive_int, default=16,
                   help="characters per sequence (steps of backpropagation through time)")
    g.add_argument("--num_epochs", type=positive_int, default=50, help="epochs to train")
    g.add_argument("--learning_rate", type=positive_float, default=0.001, help="Adam rate")
    g.add_argument("--decay_rate", type=positive_float, default=1.0,
                   help="learning rate x decay_rate after each epoch (1 = constant)")
    g.add_argument("--grad_clip", type=positive_float, default=5.0,
                   help="clip gradients to this global norm")
    g.add_argument("--patience", type=non_negative_int, default=5,
                   help="stop when validation loss has not improved for this many epochs "
                        "(0 = never stop early)")
    g.add_argument("--max_steps", type=non_negative_int, default=0,
                   help="stop after this many training steps in total (0 = no limit)")
    g.add_argument("--seed", type=int, default=1234, help="random seed for weights and dropout")
    g = p.add_argument_group("saving and resuming")
    g.add_argument("--save_every", type=positive_int, default=1000,
                   help="save a checkpoint every this many steps (and at each epoch end)")
    g.add_argument("--keep", action="store_true",
                   help="resume the model in --save_dir: step, epoch and batch continue")
    g.add_argument("--overwrite", action="store_true",
                   help="delete a model already in --save_dir and start afresh")
    g.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is visible")
    g.add_argument("--bf16", action="store_true",
                   help="CPU only: run matmuls in bfloat16 through oneDNN, for CPUs with "
                        "AVX512-BF16/AMX (faster, slightly less precise; checkpoints stay "
                        "float32)")
    return p


# ------------------------------------------------------------------------- save_dir


def existing_model(save_dir):
    return any(os.path.exists(os.path.join(save_dir, f)) for f in MODEL_MARKERS)


def clear_model(save_dir):
    for name in os.listdir(save_dir):
        if name in SAVED_FILES or name.startswith(("model.ckpt-", "best.ckpt-", "ngram")):
            os.unlink(os.path.join(save_dir, name))


def remove_other_checkpoints(save_dir, prefix, keep):
    """Delete checkpoints named prefix* except `keep` (a Saver forgets across runs)."""
    keep = os.path.basename(keep)
    for name in os.listdir(save_dir):
        if name.startswith(prefix) and not name.startswith(keep + "."):
            os.unlink(os.path.join(save_dir, name))


def check_resume(args, data):
    """need_be_same: the saved model must match the flags and the data; returns config."""
    cfg_path = os.path.join(args.save_dir, "config.pkl")
    vocab_path = os.path.join(args.save_dir, "words_vocab.pkl")
    if not os.path.exists(cfg_path) or not os.path.exists(os.path.join(args.save_dir,
                                                                       "checkpoint")):
        raise UserError(f"--keep: no trained model to resume in {args.save_dir}/ "
                        f"(config.pkl and a checkpoint are needed); drop --keep to start one")
    saved = safe_load_pickle(cfg_path, "model config")
    if not isinstance(saved, dict):
        raise UserError(f"{cfg_path} is not a model config; delete {args.save_dir}/ "
                        f"or use another --save_dir")
    for k in ARCH_FLAGS + BATCH_FLAGS:
        if k in saved and saved[k] != getattr(args, k):
            if isinstance(saved[k], bool):
                fix = f"--{k}" if saved[k] else f"no --{k}"
            else:
                fix = f"--{k} {saved[k]}"
            raise UserError(f"--keep: the model in {args.save_dir}/ has {k}={saved[k]!r} "
                            f"but this run asks for {getattr(args, k)!r}; resume with "
                            f"{fix}, or train a new model in another --save_dir", code=2)
    words = safe_load_pickle(vocab_path, "vocabulary file")
    chars = words[0] if isinstance(words, (tuple, list)) and len(words) == 2 else None
    if list(chars or []) != list(data.chars):
        raise UserError(f"--keep: the vocabulary in {vocab_path} differs from the one of "
                        f"{data.input_file} (the lyrics changed); train a new model in "
                        f"another --save_dir")
    return saved


# ---------------------------------------------------------------------------- progress


class Progress:
    """A one-line bar on a terminal; a plain line every `every` seconds otherwise."""

    def __init__(self, total, epoch, num_epochs, chars_per_step, every=60.0):
        self.total, self.epoch, self.num_epochs = total, epoch, num_epochs
        self.chars_per_step = chars_per_step
        self.tty = sys.stdout.isatty()
        self.every = 0.2 if self.tty else every
        self.start = self.last = time.time()
        self.done = 0

    def update(self, step_in_epoch, loss):
        now = time.time()
        if self.done == 0:       # the first step includes graph set-up: time from here
            self.start = self.last = now
        self.done += 1
        if now - self.last < self.every:
            return
        self.last = now
        rate = (self.done - 1) * self.chars_per_step / max(now - self.start, 1e-9)
        eta = (self.total - step_in_epoch) * self.chars_per_step / max(rate, 1e-9)
        text = (f"epoch {self.epoch + 1}/{self.num_epochs} step {step_in_epoch}/{self.total} "
                f"loss {loss:.3f} {rate / 1000:.1f}k chars/s ETA {int(eta) // 60}:"
                f"{int(eta) % 60:02d}")
        if self.tty:
            width = 24
            fill = int(width * step_in_epoch / max(self.total, 1))
            print(f"\r[{'#' * fill}{'.' * (width - fill)}] {text}  ", end="", flush=True)
        else:
            print(text, flush=True)

    def close(self):
        if self.tty:
            print("\r" + " " * 100 + "\r", end="", flush=True)


# ------------------------------------------------------------------------------ train


class NonFinite(Exception):
    """The weights hold inf/NaN: nothing may be saved."""


def run_epoch(session, model, xs, ys, eval_op=None, start=0, keep_prob=1.0, on_step=None):
    """Run batches xs[start:], ys[start:] carrying the RNN state from batch to batch.

    With eval_op (the train op) it trains; without, it only measures (validation).
    on_step(i, loss, grad_norm) may return True to stop early.  Returns (mean loss,
    number of batches run).
    """
    state = session.run(model.initial_state)
    fetches = {"cost": model.cost, "state": model.final_state}
    if eval_op is not None:
        fetches["train"] = eval_op
        fetches["grad_norm"] = model.grad_norm
    total, n = 0.0, 0
    for i in range(start, len(xs)):
        feed = {model.input_data: xs[i], model.targets: ys[i]}
        feed.update(model.state_feed(state))
        if eval_op is not None and keep_prob < 1.0:
            feed[model.keep_prob] = keep_prob
        out = session.run(fetches, feed)
        state = out["state"]
        total += out["cost"]
        n += 1
        if on_step is not None and on_step(i, out["cost"], out.get("grad_norm", 0.0)):
            break
    return (total / n if n else float("nan")), n


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.keep and args.overwrite:
        raise UserError("--keep resumes and --overwrite starts afresh: pick one", code=2)
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

    from preprocess import TextParser
    data = TextParser(args.data_dir, args.batch_size, args.seq_length, args.val_frac,
                      verbose=True)
    args.vocab_size = data.vocab_size

    os.makedirs(args.save_dir, exist_ok=True)
    if args.keep:
        check_resume(args, data)
    elif existing_model(args.save_dir):
        if not args.overwrite:
            raise UserError(f"{args.save_dir}/ already holds a trained model; resume it with "
                            f"--keep, train into another --save_dir, or pass --overwrite to "
                            f"replace it", code=2)
        clear_model(args.save_dir)

    tf = import_tensorflow()
    from seq2seq_rnn import Model
    tf1 = tf.compat.v1

    gpus = tf.config.list_physical_devices("GPU")
    device = (f"GPU ({', '.join(g.name for g in gpus)})" if gpus else
              "CPU (--cpu)" if args.cpu else "CPU (no GPU visible)")
    print(f"train: device {device}")

    config = {k: v for k, v in vars(args).items() if k not in ("keep", "overwrite", "cpu")}
    config["format"] = 1
    atomic_pickle(os.path.join(args.save_dir, "config.pkl"), config)
    atomic_pickle(os.path.join(args.save_dir, "words_vocab.pkl"),
                  (list(data.chars), dict(data.vocab)))
    # The training text (as ids) and its no-copy index travel with the model, so sample.py
    # can keep generated lyrics from repeating it, wherever save/ is copied to.
    atomic_save_npy(os.path.join(args.save_dir, "corpus.npy"), data.context)
    with open(data.index_file, "rb") as f:
        atomic_write_bytes(os.path.join(args.save_dir, os.path.basename(data.index_file)),
                           f.read())

    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(args.seed)
        model = Model(args)
        init = tf1.global_variables_initializer()
        saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=5,
                                keep_checkpoint_every_n_hours=1, save_relative_paths=True)
        best_saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=1,
                                     save_relative_paths=True)
        n_params = count_params()
    graph.finalize()          # any op created from here on (in the loop) is a bug

    if args.bf16 and gpus:
        print("train: --bf16 is for CPUs; ignored on the GPU")
    elif args.bf16 and not cpu_has_bf16():
        print("train: warning: this CPU has no native bfloat16 (AVX512-BF16/AMX); --bf16 "
              "may be slower than float32")
    sess = tf1.Session(graph=graph, config=session_config(args.bf16 and not gpus))
    if args.keep:
        ckpt = tf1.train.latest_checkpoint(args.save_dir)
        if ckpt is None:
            raise UserError(f"--keep: the checkpoint listed in {args.save_dir}/checkpoint is "
                            f"missing; drop --keep to start afresh")
        try:
            saver.restore(sess, ckpt)
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
                tf.errors.DataLossError) as e:
            raise UserError(f"--keep: cannot restore {ckpt} with this configuration "
                            f"({type(e).__name__}); it was made by another model")
        step, start_epoch, start_pointer, best_val = sess.run(
            [model.global_step, model.epoch, model.batch_pointer, model.best_val_loss])
        start_epoch, start_pointer = int(start_epoch), int(start_pointer)
        if start_pointer >= data.num_batches:
            start_epoch, start_pointer = start_epoch + 1, 0
        state = tf1.train.get_checkpoint_state(args.save_dir)
        saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))
        print(f"train: resumed {ckpt} at step {step}, epoch {start_epoch + 1}, batch "
              f"{start_pointer}")
        if start_epoch >= args.num_epochs:
            raise UserError(f"--keep: the model in {args.save_dir}/ has already trained "
                            f"{start_epoch} epochs; raise --num_epochs to train more", code=2)
        if args.max_steps and step >= args.max_steps:
            raise UserError(f"--keep: the model in {args.save_dir}/ has already trained "
                            f"{step} steps; raise --max_steps to train more", code=2)
    else:
        sess.run(init)
        start_epoch, start_pointer, best_val = 0, 0, float("inf")

    os.makedirs(args.log_dir, exist_ok=True)
    log_path = log_filename(args.log_dir)
    logging(log_path, config=config)
    tb = tf1.summary.FileWriter(os.path.splitext(log_path)[0], graph=graph)
    print(f"train: {args.rnncell} {args.num_layers}x{args.rnn_size}, embedding "
          f"{args.embedding_size}{', attention' if args.attention else ''}: {n_params:,} "
          f"parameters; log {log_path}")

    try:
        return fit(args, data, sess, model, saver, best_saver, log_path, tb,
                   start_epoch, start_pointer, best_val)
    except NonFinite as e:
        print(f"train: error: {e}; stopped without saving, the last good checkpoint in "
              f"{args.save_dir}/ is kept. Lower --learning_rate or --grad_clip.",
              file=sys.stderr)
        return 1
    finally:
        tb.close()
        sess.close()


def fit(args, data, sess, model, saver, best_saver, log_path, tb, start_epoch,
        start_pointer, best_val):
    """The epoch loop: train, validate, log, save; stop on patience, max_steps or a
    signal.  Raises NonFinite (before saving anything) when the loss or weights blow up."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ckpt_prefix = os.path.join(args.save_dir, "model.ckpt")
    best_prefix = os.path.join(args.save_dir, "best.ckpt")

    def save(epoch, pointer):
        if not sess.run(model.weights_finite):
            raise NonFinite(f"the weights hold inf/NaN at step {step}")
        model.set_progress(sess, epoch, pointer)
        return saver.save(sess, ckpt_prefix, global_step=model.global_step,
                          write_meta_graph=False)

    chars_per_step = args.batch_size * args.seq_length
    bad_epochs, stopped, path = 0, None, None
    step = int(sess.run(model.global_step))
    for epoch in range(start_epoch, args.num_epochs):
        lr = args.learning_rate * args.decay_rate ** epoch
        model.set_lr(sess, lr)
        progress = Progress(data.num_batches, epoch, args.num_epochs, chars_per_step)
        pointer = data.num_batches          # where this epoch stops; less if cut short

        def on_step(i, loss, grad_norm):
            nonlocal step, pointer
            step += 1
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                raise NonFinite(f"the loss became {loss} at step {step} (epoch {epoch + 1})")
            progress.update(i + 1, loss)
            if step % args.save_every == 0:
                save(epoch, i + 1)
            if stop["signal"] or (args.max_steps and step >= args.max_steps):
                pointer = i + 1
                return True
            return False

        t0 = time.time()
        train_loss, n_run = run_epoch(
            sess, model, data.x_batches, data.y_batches, eval_op=model.train_op,
            start=start_pointer if epoch == start_epoch else 0,
            keep_prob=1.0 - args.dropout, on_step=on_step)
        seconds = time.time() - t0
        progress.close()
        if stop["signal"]:
            path = save(epoch, pointer)
            print(f"train: {stop['signal']}: saved {path}; resume with --keep")
            return 0

        val_loss = None
        if data.num_val_batches:
            val_loss, _ = run_epoch(sess, model, data.val_x_batches, data.val_y_batches)
            if not math.isfinite(val_loss):
                raise NonFinite(f"the validation loss became {val_loss} after epoch "
                                f"{epoch + 1}")
        for line in epoch_lines(epoch + 1, train_loss, val_loss, seconds):
            logging(log_path, line)
        msg = f"epoch {epoch + 1}/{args.num_epochs}: train loss {train_loss:.4f}"
        if val_loss is not None:
            msg += f", validation loss {val_loss:.4f} (perplexity {perplexity(val_loss):.1f})"
        rate = n_run * chars_per_step / max(seconds, 1e-9)
        print(f"{msg}, {seconds:.1f}s, {rate / 1000:.1f}k chars/s", flush=True)
        summary = [("loss/train", train_loss), ("learning_rate", lr)]
        if val_loss is not None:
            summary.append(("loss/validation", val_loss))
        tb.add_summary(tf1.Summary(value=[tf1.Summary.Value(tag=t, simple_value=v)
                                          for t, v in summary]), step)
        tb.flush()

        improved = val_loss is not None and val_loss < best_val
        if improved:
            best_val, bad_epochs = val_loss, 0
            model.set_best(sess, best_val)
        elif val_loss is not None:
            bad_epochs += 1
        done = pointer >= data.num_batches
        path = save(epoch + 1 if done else epoch, 0 if done else pointer)
        if improved:
            best = best_saver.save(sess, best_prefix, global_step=model.global_step,
                                   latest_filename="checkpoint_best", write_meta_graph=False)
            remove_other_checkpoints(args.save_dir, "best.ckpt-", best)
        if args.max_steps and step >= args.max_steps:
            stopped = f"--max_steps {args.max_steps}"
            break
        if args.patience and bad_epochs >= args.patience:
            stopped = f"no validation improvement for {args.patience} epochs (--patience)"
            break
    if stopped:
        print(f"train: stopped: {stopped}")
    print(f"train: saved {path}" + (f"; best validation loss {best_val:.4f}"
                                    if math.isfinite(best_val) else ""))
    return 0


if __name__ == "__main__":
    run_main(main, "train.py", fast_exit=True)

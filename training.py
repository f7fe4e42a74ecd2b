"""The training loop (the PTB tutorial's run_epoch, for training and validation alike) and
Fit, the epoch loop around it: progress, state resets, annealing, the divergence guard,
saves with the log's Saved lines, the stop reasons (a signal, --max_steps, --max_minutes,
--patience).  train.py builds the graph and the data, then hands both to Fit."""
import collections
import math
import signal
import sys
import time

from modeldir import save_checkpoint
from trainlog import append_log, epoch_lines, saved_line
from utils import perplexity


def clock(seconds):
    """'m:ss', or 'h:mm:ss' from an hour on."""
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


class Progress:
    """A one-line bar on a terminal; a plain line every `every` seconds otherwise."""

    def __init__(self, total, epoch, num_epochs, chars_per_step, every=60.0,
                 run_left=None):
        """run_left(steps per second) -> the seconds the whole run has left at most
        (its budget of steps, epochs and minutes), or None: shown after the epoch's."""
        self.total, self.epoch, self.num_epochs = total, epoch, num_epochs
        self.chars_per_step, self.run_left = chars_per_step, run_left
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
                f"loss {loss:.3f} {rate / 1000:.1f}k chars/s ETA {clock(eta)}")
        left = self.run_left(rate / self.chars_per_step) if self.run_left and rate > 0 \
            else None
        if left is not None and left > eta + 1:
            text += f" (run at most {clock(left)})"
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


class Released(Exception):
    """A worker of a cluster read the chief's stop flag after a step: the run has ended."""


class NonFinite(Exception):
    """The weights hold inf/NaN, or the loss diverged: nothing may be saved."""


def divergence_limit(vocab_size):
    """A loss this far above ln(V) (uniform guessing) is divergence, not learning."""
    uniform = math.log(max(vocab_size, 2))
    return max(3 * uniform, uniform + 10)


def reset_masks(seed, batch_size, seq_length, reset_chars):
    """state_mask for run_epoch: each row's state is reset with probability
    seq_length / reset_chars before a batch (a reset on average every reset_chars
    characters).  Drawn from (seed, global step), so a resumed run resets where an
    uninterrupted one would."""
    import numpy as np
    if not reset_chars:
        return lambda step: None
    p = min(1.0, seq_length / reset_chars)
    return lambda step: (np.random.default_rng((seed % 2**32, step)).random(batch_size) >= p
                         ).astype(np.float32)


ANNEAL_FLOOR = 0.1      # --anneal ends at this share of the learning rate


ANNEAL_EVERY = 100      # steps between learning-rate updates (an assign op per update)


def annealed(lr, done):
    """--anneal: the rate after a share `done` (0..1) of the run's budget, on a cosine
    from lr down to ANNEAL_FLOOR * lr."""
    done = min(max(done, 0.0), 1.0)
    return lr * (ANNEAL_FLOOR + (1 - ANNEAL_FLOOR) * 0.5 * (1 + math.cos(math.pi * done)))


def masked_state(state, mask):
    """The nested state (tuples of [batch_size, ...] arrays) with rows where mask is 0
    zeroed."""
    if isinstance(state, (tuple, list)):
        return tuple(masked_state(s, mask) for s in state)
    return state * mask.reshape((-1,) + (1,) * (state.ndim - 1))


# --sampled_softmax: the full-softmax loss the training reports is measured on every
# this many steps' batches (a forward pass over all V logits, about a third of the full
# softmax's work: every 16th step, an estimated 1-2 % of the time; not measured apart).
MEASURE_EVERY = 16


def run_epoch(session, model, xs, ys, eval_op=None, start=0, keep_prob=1.0, on_step=None,
              state_mask=None, rows=None, stop=None, options=None):
    """Run batches xs[start:], ys[start:] carrying the RNN state from batch to batch.

    With eval_op (the train op) it trains; without, it only measures (validation).
    on_step(i, loss, grad_norm) may return True to stop early.  state_mask(i), if given,
    returns None or a [batch_size] array of 0/1: the rows with 0 start batch i from the
    zero state.  rows: the loss reported (and checked) is the mean over the first `rows`
    rows only (--mix_base: the user's text; the gradient covers every row).  Returns
    (mean loss, number of batches run).

    The loss is always the full softmax's.  A model that trains on a sampled softmax
    (model.sampled) has it computed on every MEASURE_EVERY-th batch only (the first one
    included); on_step then gets the latest such figure, the returned mean is theirs, and
    a training step that went non-finite shows in its grad_norm at once.

    On a cluster (cluster.py): `stop` is the chief's stop flag, read after each training
    step (Released is raised when it is set: that step was never applied), and `options`
    the steps' RunOptions (their time-out).
    """
    state = session.run(model.initial_state)
    fetches = {"state": model.final_state}
    if eval_op is not None:
        fetches["train"] = eval_op
        fetches["grad_norm"] = model.grad_norm
        if stop is not None:
            fetches["stop"] = stop
    measured = dict(fetches, cost=model.cost if rows is None else model.row_cost)
    sparse = eval_op is not None and model.sampled
    total, n, n_measured, loss = 0.0, 0, 0, float("nan")
    for i in range(start, len(xs)):
        feed = {model.input_data: xs[i], model.targets: ys[i]}
        mask = state_mask(i) if state_mask is not None else None
        if mask is not None:
            state = masked_state(state, mask)
        feed.update(model.state_feed(state))
        if eval_op is not None and keep_prob < 1.0:
            feed[model.keep_prob] = keep_prob
        measure = not sparse or (i - start) % MEASURE_EVERY == 0
        out = session.run(measured if measure else fetches, feed, options=options)
        if out.get("stop"):
            raise Released()
        state = out["state"]
        if measure:
            loss = out["cost"] if rows is None else float(out["cost"][:rows].mean())
            total += loss
            n_measured += 1
        n += 1
        if on_step is not None and on_step(i, loss, out.get("grad_norm", 0.0)):
            break
    return (total / n_measured if n_measured else float("nan")), n


def add_scalars(writer, step, scalars):
    """{tag: value} as TensorBoard scalars at `step` (a tf.compat.v1.summary.FileWriter)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(tag=t, simple_value=v)
                                          for t, v in scalars.items()]), step)
    writer.flush()


class Budget:
    """How much of a run is left: its steps (--num_epochs, --max_steps) and its minutes
    (--max_minutes), as the share --anneal follows, the progress line's "run at most"
    and the time-out check."""

    def __init__(self, args, data, first_step, start_epoch, start_pointer):
        self.args, self.data, self.first_step = args, data, first_step
        total = (args.num_epochs - start_epoch) * data.num_batches - start_pointer
        self.total_steps = min(total, args.max_steps - first_step) if args.max_steps \
            else total
        # --max_minutes: training stops at `deadline`, leaving time for the validation
        # pass that follows (estimated from the step time: a forward pass is about a
        # third of a training step) and the saves.
        self.deadline = None if not args.max_minutes else \
            args.start_time + args.max_minutes * 60
        self.step_times, self.timed_out = [], False

    def done(self, step):
        """Share of this run's budget used at `step` (--anneal).  --max_steps counts the
        model's steps, not this run's: a run resumed with --keep and the same
        --max_steps goes on along the same curve (a base trained over several sittings
        anneals once)."""
        if self.args.max_steps:
            done = step / self.args.max_steps
        else:
            done = (step - self.first_step) / max(self.total_steps, 1)
        if self.deadline is not None:
            done = max(done, (time.time() - self.args.start_time) /
                       (self.args.max_minutes * 60))
        return done

    def left(self, step, epoch_now, steps_per_s):
        """Seconds this run has left at most at `step` in epoch `epoch_now`: its remaining
        steps at this rate and the validation passes of the epochs they reach, or to its
        --max_minutes deadline, whichever is sooner."""
        per_val = self.data.num_val_batches / max(3 * steps_per_s, 1e-9)
        steps_left = self.total_steps - (step - self.first_step)
        # the epochs still to end: this one, and at most one more for each epoch's worth
        # of remaining steps (not every epoch up to --num_epochs when --max_steps ends
        # the run sooner: a base at 300,000 steps overstated its ETA by 15 passes)
        epochs_left = min(self.args.num_epochs - epoch_now,
                          1 + math.ceil(steps_left / max(self.data.num_batches, 1)))
        left = steps_left / max(steps_per_s, 1e-9) + epochs_left * per_val
        if self.deadline is not None:
            left = min(left, self.deadline - time.time())
        return left

    def spent(self, step):
        """Which budget this run has used up at `step`, or None."""
        args = self.args
        if args.max_steps and step >= args.max_steps:
            return f"--max_steps {args.max_steps}"
        if self.timed_out:
            return (f"--max_minutes {args.max_minutes:g} (after "
                    f"{(time.time() - args.start_time) / 60:.1f} minutes)")
        return None

    def out_of_time(self):
        if self.deadline is None:
            return False
        now = time.time()
        self.step_times.append(now)
        times = self.step_times
        per_step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
        self.timed_out = now + self.data.num_val_batches * per_step / 3 + 5 >= self.deadline
        return self.timed_out


class Guard:
    """The divergence checks: a step's loss and gradient norm, the validation loss, and
    before each save the weights (finite, and still predicting: a step's loss is
    measured before its update, so an exploding update shows only here, in one forward
    pass on the first training batch from the zero state).  Each raises NonFinite, so
    nothing bad is saved."""

    def __init__(self, sess, model, data):
        self.sess, self.model, self.vocab_size = sess, model, data.vocab_size
        self.too_high = divergence_limit(data.vocab_size)
        self.probe = {model.input_data: data.x_batches[0], model.targets: data.y_batches[0]}

    def diverged(self, loss, step):
        return NonFinite(f"the loss reached {loss:.4g} at step {step}, far above "
                         f"ln(vocabulary) = {math.log(self.vocab_size):.2f} of uniform "
                         f"guessing: the training diverged")

    def check_step(self, loss, grad_norm, step, epoch):
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise NonFinite(f"the loss became {loss} at step {step} (epoch {epoch + 1})")
        if loss > self.too_high:
            raise self.diverged(loss, step)

    def check_validation(self, val_loss, epoch):
        if not math.isfinite(val_loss) or val_loss > self.too_high:
            raise NonFinite(f"the validation loss became {val_loss:.4g} after epoch "
                            f"{epoch + 1}")

    def check_weights(self, step):
        if not self.sess.run(self.model.weights_finite):
            raise NonFinite(f"the weights hold inf/NaN at step {step}")
        probe_loss = float(self.sess.run(self.model.cost, self.probe))
        if not probe_loss <= self.too_high:
            raise self.diverged(probe_loss, step)


class Fit:
    """The epoch loop: each epoch trains (train_epoch), validates, reports and saves
    (checkpoint), until --num_epochs or a stop reason (a signal, --max_steps,
    --max_minutes, --patience).  Raises NonFinite (before saving anything) when the loss
    or the weights blow up.

    cluster (a cluster.ClusterRun, or None for one process): every worker trains its
    stretch of the batches (data holds only that); the chief alone sets the learning
    rate, validates, decides when to stop early, saves and logs (log_path, tb); the
    others end at the same step count, or when the chief's stop flag releases them."""

    def __init__(self, args, data, sess, g, log_path, tb, begun, cluster=None):
        self.args, self.data, self.sess, self.g = args, data, sess, g
        self.cluster = cluster
        self.chief = cluster is None or cluster.cluster.is_chief
        self.who = cluster.cluster.name if cluster is not None else None   # "worker 1"
        self.model, self.log_path, self.tb = g.model, log_path, tb
        self.start_epoch, self.start_pointer, self.best_val = begun
        self.epoch_now, self.bad_epochs, self.signal = self.start_epoch, 0, None
        self.chars_per_step = args.batch_size * args.seq_length
        self.guard = Guard(sess, self.model, data)
        self.resets = reset_masks(args.seed, args.batch_size, args.seq_length,
                                  args.reset_chars)
        self.recent = collections.deque(maxlen=1000)   # the last 1,000 steps' losses
        self.step = int(sess.run(self.model.global_step))
        self.budget = Budget(args, data, self.step, self.start_epoch, self.start_pointer)
        # this run's training seconds (validation not counted), for the log's Saved lines
        self.trained_seconds, self.epoch_t0 = 0.0, None

    def run(self):
        def on_signal(signum, frame):
            self.signal = signal.Signals(signum)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        args, reason, path = self.args, None, None
        for epoch in range(self.start_epoch, args.num_epochs):
            try:
                train_loss, n_run, seconds, pointer = self.train_epoch(epoch)
            except Released:
                print(f"train: {self.who}: the chief ended the run at step "
                      f"{self.step}", flush=True)
                return 0
            if self.signal and not self.chief:
                print(f"train: {self.who}: {self.signal.name}: stopped "
                      f"(the chief's checkpoints are the model)")
                return 128 + self.signal
            if self.signal:
                path = self.save(epoch, pointer)
                print(f"train: {self.signal.name}: saved {path}; resume with --keep")
                # 128 + the signal's number, as a shell reports a process the signal
                # ended: a script running train.py (scripts/base.sh, set -e) stops here
                # instead of announcing a finished model.
                return 128 + self.signal
            val_loss = self.validate(epoch)
            self.report(epoch, train_loss, val_loss, seconds, n_run)
            path = self.checkpoint(epoch, pointer, val_loss) if self.chief else path
            reason = self.stop_reason()
            if reason:
                print(f"train: stopped: {reason}")
                break
        if not self.chief:
            print(f"train: {self.who}: ended at step {self.step}")
            return 0
        print(f"train: saved {path}" + (f"; best validation loss {self.best_val:.4f}"
                                        if math.isfinite(self.best_val) else ""))
        return 0

    def lr(self, epoch):
        lr = self.args.learning_rate * self.args.decay_rate ** epoch
        return annealed(lr, self.budget.done(self.step)) if self.args.anneal else lr

    def run_left(self, steps_per_s):
        return self.budget.left(self.step, self.epoch_now, steps_per_s)

    def train_epoch(self, epoch):
        """One epoch's training steps (from the batch pointer when resuming); returns
        (mean loss, steps run, seconds, where it stopped)."""
        args, data, model = self.args, self.data, self.model
        self.epoch_now = epoch
        data.set_epoch(epoch)           # --mix_base: this epoch's stretch of the base
        if self.chief:                  # (a cluster's learning rate is the chief's)
            model.set_lr(self.sess, self.lr(epoch))
        progress = Progress(data.num_batches, epoch, args.num_epochs, self.chars_per_step,
                            every=getattr(args, "progress_every", 60.0),
                            run_left=self.run_left)
        stopped_at = [data.num_batches]     # where this epoch stops; less if cut short

        def on_step(i, loss, grad_norm):
            self.step += 1
            self.guard.check_step(loss, grad_norm, self.step, epoch)
            progress.update(i + 1, loss)
            self.recent.append(loss)
            if args.anneal and self.step % ANNEAL_EVERY == 0 and self.chief:
                model.set_lr(self.sess, self.lr(epoch))
            if self.step % args.save_every == 0 and self.chief:
                self.save(epoch, i + 1)
            if self.signal or (args.max_steps and self.step >= args.max_steps) \
                    or self.budget.out_of_time():
                stopped_at[0] = i + 1
                return True
            return False

        t0 = self.epoch_t0 = time.time()
        try:        # (a released worker's bar ends its line too)
            loss, n_run = run_epoch(
                self.sess, model, data.x_batches, data.y_batches, eval_op=model.train_op,
                start=self.start_pointer if epoch == self.start_epoch else 0,
                keep_prob=1.0 - args.dropout, on_step=on_step,
                state_mask=lambda i: self.resets(self.step), rows=data.own_rows,
                stop=getattr(model, "stop_after_step", None) if not self.chief else None,
                options=self.cluster.step_options() if self.cluster else None)
        finally:
            progress.close()
        seconds = time.time() - t0
        self.trained_seconds, self.epoch_t0 = self.trained_seconds + seconds, None
        return loss, n_run, seconds, stopped_at[0]

    def validate(self, epoch):
        """The held-out loss (None without a held-out part, or on a worker not the
        chief)."""
        if not self.data.num_val_batches or not self.chief:
            return None
        val_loss, _ = run_epoch(self.sess, self.model, self.data.val_x_batches,
                                self.data.val_y_batches)
        self.guard.check_validation(val_loss, epoch)
        return val_loss

    def report(self, epoch, train_loss, val_loss, seconds, n_run):
        """The epoch's line on stdout, in the log and in TensorBoard."""
        args, recent = self.args, self.recent
        for line in epoch_lines(epoch + 1, train_loss, val_loss, seconds):
            if self.chief:
                append_log(self.log_path, line)
        msg = (f"epoch {epoch + 1}/{args.num_epochs}: train loss {train_loss:.4f} (last "
               f"{len(recent):,} steps {sum(recent) / max(len(recent), 1):.4f})")
        if val_loss is not None:
            msg += f", validation loss {val_loss:.4f} (perplexity {perplexity(val_loss):.1f})"
        rate = n_run * self.chars_per_step / max(seconds, 1e-9)
        who = "" if self.who is None else f"{self.who}: "
        print(f"{who}{msg}, {seconds:.1f}s, {rate / 1000:.1f}k chars/s", flush=True)
        if not self.chief:
            return
        scalars = {"loss/train": train_loss, "learning_rate": self.lr(epoch)}
        if val_loss is not None:
            scalars["loss/validation"] = val_loss
        add_scalars(self.tb, self.step, scalars)

    def save(self, epoch, pointer):
        """A model.ckpt-<step>, after checking the weights are finite and still predict."""
        self.guard.check_weights(self.step)
        self.model.set_progress(self.sess, epoch, pointer)
        path = save_checkpoint(self.g.saver, self.sess, self.args.save_dir,
                               self.model.global_step)
        seconds = self.trained_seconds
        if self.epoch_t0 is not None:               # a save in the middle of an epoch
            seconds += time.time() - self.epoch_t0
        append_log(self.log_path, saved_line(self.step, seconds))
        return path

    def checkpoint(self, epoch, pointer, val_loss):
        """The epoch's saves: model.ckpt-<step>, and best.ckpt-<step> when the held-out
        loss improved.  Returns the model.ckpt path."""
        improved = val_loss is not None and val_loss < self.best_val
        if improved:
            self.best_val, self.bad_epochs = val_loss, 0
            self.model.set_best(self.sess, self.best_val)
        elif val_loss is not None:
            self.bad_epochs += 1
        done = pointer >= self.data.num_batches
        path = self.save(epoch + 1 if done else epoch, 0 if done else pointer)
        if improved:
            save_checkpoint(self.g.best_saver, self.sess, self.args.save_dir,
                            self.model.global_step, best=True)
        return path

    def stop_reason(self):
        """Why training stops after this epoch, or None."""
        patience = self.args.patience
        return self.budget.spent(self.step) or (
            f"no validation improvement for {patience} epochs (--patience)"
            if patience and self.bad_epochs >= patience else None)

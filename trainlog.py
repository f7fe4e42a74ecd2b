"""The training log (log/<timestamp>.txt): its format, written by train.py and read by
analysis/plot.py and scripts/pack_model.py.

The format is the article's, so plot.py (and anyone's old scripts) can parse it: the
configuration first, one `key: value` per line, then per epoch
  Epoch:N train error rate:X
  Epoch:N validate error rate:X
  Epoch:N train time:T
and, ours, a `Machine:` line after the configuration and a `Saved:` line at each save.
"""
import os
import re
import time

LOG_CONFIG_HEADER = "config:"


def log_filename(log_dir, when=None):
    """`log/<timestamp>.txt`, with no ':' so the name is legal on every file system."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(when))
    path = os.path.join(log_dir, stamp + ".txt")
    n = 1
    while os.path.exists(path):          # two runs in the same second
        path = os.path.join(log_dir, f"{stamp}_{n}.txt")
        n += 1
    return path


def append_log(path, line=None, config=None):
    """Append to the training log: the config block (a dict) and/or one line.

    Each call opens, appends and closes, so a killed run leaves a readable log.
    """
    with open(path, "a", encoding="utf-8") as f:
        if config is not None:
            f.write(LOG_CONFIG_HEADER + "\n")
            for k in sorted(config):
                f.write(f"  {k}: {config[k]}\n")
        if line is not None:
            f.write(line.rstrip("\n") + "\n")


LOG_MACHINE = "Machine:"      # the line each run writes after its config block
# The line each save writes: `Saved: step S train time:T`, T = the seconds this run
# (one sitting) has trained so far, validation passes not counted.  An epoch line comes
# only when an epoch ends, so a run stopped or killed mid-epoch is known by these.
LOG_SAVED = "Saved:"


def saved_line(step, seconds):
    return f"{LOG_SAVED} step {step} train time:{seconds:.2f}"


def log_train_seconds(path):
    """(seconds trained, last step saved or None) of one run's log: its epochs' time, or
    the time at its last save when that is more (a run that stopped mid-epoch)."""
    _, epochs = parse_log(path, need_epochs=False)
    seconds = sum(e.get("time", 0.0) for e in epochs.values())
    step = None
    pat = re.compile(r"^" + LOG_SAVED + r" step (\d+) train time:([0-9.]+)\s*$")
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = pat.match(line)
            if m:
                step, seconds = int(m.group(1)), max(seconds, float(m.group(2)))
    return seconds, step


def epoch_lines(epoch, train_loss, val_loss, seconds):
    """The three per-epoch lines of the article's log format."""
    lines = [f"Epoch:{epoch} train error rate:{train_loss:.6f}"]
    if val_loss is not None:
        lines.append(f"Epoch:{epoch} validate error rate:{val_loss:.6f}")
    lines.append(f"Epoch:{epoch} train time:{seconds:.2f}")
    return lines


def parse_log(path, need_epochs=True):
    """Read a training log: returns (config dict, {epoch: {'train':x,'validate':y,'time':t}}).

    Raises ValueError when the file is not a training log of ours (with need_epochs,
    also when no epoch has ended in it).
    """
    pat = re.compile(r"^Epoch:(\d+) (train error rate|validate error rate|train time):"
                     r"\s*([-+0-9.eE]+|nan|inf)\s*$")
    key = {"train error rate": "train", "validate error rate": "validate",
           "train time": "time"}
    config, epochs, in_config = {}, {}, False
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError("not a text file")
    for line in lines:
        if line.strip() == LOG_CONFIG_HEADER:
            in_config = True
            continue
        m = pat.match(line)
        if m:
            in_config = False
            epochs.setdefault(int(m.group(1)), {})[key[m.group(2)]] = float(m.group(3))
        elif in_config and line.startswith("  ") and ":" in line:
            k, v = line.strip().split(":", 1)
            config[k.strip()] = v.strip()
    if not epochs and (need_epochs or not config):
        raise ValueError("no 'Epoch:N train error rate:X' lines")
    return config, epochs

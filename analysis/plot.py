"""Plot training and validation cost per epoch from train.py logs.

    python analysis/plot.py log/*.txt

For each log a PNG next to it (<log>.png); with several logs also one comparison figure
(log/compare.png, or --out).  A file that is not a training log is reported and skipped;
the others are still plotted.  Headless (Agg) unless --show.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from matplotlib.ticker import MaxNLocator  # noqa: E402  (no pyplot: backend chosen later)

from utils import ArgumentParser, UserError, run_main  # noqa: E402
from fileio import atomic_write_bytes  # noqa: E402
from trainlog import parse_log  # noqa: E402

TITLE_KEYS = ("rnncell", "num_layers", "rnn_size", "embedding_size", "batch_size",
              "seq_length", "learning_rate", "attention", "dropout")


def title_of(config, path):
    c = config
    if not c:
        return os.path.basename(path)
    parts = [f"{c.get('rnncell', '?')} {c.get('num_layers', '?')}x{c.get('rnn_size', '?')}",
             f"emb {c.get('embedding_size', '?')}",
             f"batch {c.get('batch_size', '?')}x{c.get('seq_length', '?')}",
             f"lr {c.get('learning_rate', '?')}"]
    if c.get("attention") == "True":
        parts.append("attention")
    if c.get("dropout") not in (None, "0.0", "0"):
        parts.append(f"dropout {c['dropout']}")
    return f"{os.path.basename(path)}: " + ", ".join(parts)


def series(epochs, key):
    xs = sorted(e for e in epochs if key in epochs[e])
    return xs, [epochs[e][key] for e in xs]


def plot_one(plt, path, config, epochs, out):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label in (("train", "train"), ("validate", "validation")):
        xs, ys = series(epochs, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
    xs, ys = series(epochs, "validate")
    if xs:
        best = min(range(len(ys)), key=ys.__getitem__)
        ax.annotate(f"best {ys[best]:.3f} @ {xs[best]}", (xs[best], ys[best]),
                    textcoords="offset points", xytext=(0, 10), ha="center", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost (cross-entropy per character, nats)")
    ax.set_title(title_of(config, path), fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:     # a log of times only has no curve to name
        ax.legend()
    fig.tight_layout()
    save_figure(fig, out)
    return fig


def save_figure(fig, out):
    """Render to memory, then write atomically: a failed write leaves no 0-byte PNG."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    atomic_write_bytes(out, buf.getvalue())


def plot_compare(plt, logs, out):
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for path, config, epochs in logs:
        name = os.path.splitext(os.path.basename(path))[0]
        line = None
        for key, style in (("train", "--"), ("validate", "-")):
            xs, ys = series(epochs, key)
            if xs:
                kw = {"color": line.get_color()} if line is not None else {}
                (line,) = ax.plot(xs, ys, style, label=f"{name} {key}", **kw)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost (nats per character)")
    ax.set_title("train (dashed) and validation (solid) cost", fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)
    return fig


def main(argv=None):
    p = ArgumentParser(
        description="Plot train/validation cost curves from train.py logs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("logs", nargs="+", help="log files written by train.py (log/*.txt)")
    p.add_argument("--out", default=None,
                   help="comparison figure when several logs are given "
                        "(default: compare.png beside the first log)")
    p.add_argument("--show", action="store_true", help="also open the figures in a window")
    args = p.parse_args(argv)

    import matplotlib
    if not args.show:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good, bad = [], 0
    for path in args.logs:
        try:
            config, epochs = parse_log(path)
        except FileNotFoundError:
            print(f"plot.py: skipped {path}: no such file", file=sys.stderr)
            bad += 1
            continue
        except (ValueError, IsADirectoryError, PermissionError) as e:
            print(f"plot.py: skipped {path}: not a training log ({e})", file=sys.stderr)
            bad += 1
            continue
        out = os.path.splitext(path)[0] + ".png" if path.endswith(".txt") else path + ".png"
        plot_one(plt, path, config, epochs, out)
        print(f"plot.py: {path} -> {out} ({len(epochs)} epochs)")
        good.append((path, config, epochs))
    if len(good) > 1:
        out = args.out or os.path.join(os.path.dirname(good[0][0]) or ".", "compare.png")
        plot_compare(plt, good, out)
        print(f"plot.py: comparison of {len(good)} logs -> {out}")
    if args.show and good:
        plt.show()
    if not good:
        raise UserError("none of the files is a training log written by train.py")
    return 1 if bad else 0


if __name__ == "__main__":
    run_main(main, "plot.py")

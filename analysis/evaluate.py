"""Honest quality numbers for a trained model.

    python analysis/evaluate.py [--save_dir save] [--text my_heldout_lyrics.txt] [--samples 20]

* Cross-entropy per character (nats) and perplexity on a text: --text (raw lyrics, cleaned
  the same way as data/parse.py does), or by default the held-out validation tail of the
  training text.  Characters outside the vocabulary are counted and reported: they are
  skipped, never silently treated as known.
* For --samples generated samples (sample.py's sampler, its default no-copy rule unless
  --max_copy 0): the longest run found verbatim in the training text, the share of 4- and
  8-grams found there, distinct-1/2, rhyme rate, and the line-length distribution next to
  the training text's.

Prints a table and, as the last line, one JSON object.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from utils import (UserError, non_negative_int, perplexity, positive_int,  # noqa: E402
                   run_main)


def cross_entropy(sampler, ids):
    """Mean -log p(next | past) over ids, fed one character at a time from the zero
    state, exactly as sampling sees the text.  Returns (nats per character, count)."""
    state = sampler.zero_state()
    total, n = 0.0, 0
    for a, b in zip(ids[:-1], ids[1:]):
        probs, state = sampler.step(a, state)
        total -= math.log(max(float(probs[b]), 1e-30))
        n += 1
    return (total / n if n else float("nan")), n


def cross_entropy_windowed(sampler, ids, window=64):
    """The same number as cross_entropy(), faster: windows of `window` characters through
    the batch graph with the state carried on (as training's validation does), the last
    partial window one character at a time.  Models with attention are scored one step at
    a time, because their rolling buffer is what sampling sees."""
    if sampler.config.get("attention"):
        return cross_entropy(sampler, ids)
    from utils import import_tensorflow
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    from seq2seq_rnn import Model
    graph = tf.Graph()
    with graph.as_default():
        m = Model(dict(sampler.config, batch_size=1, seq_length=window), training=False)
        saver = tf1.train.Saver(tf1.global_variables())
    graph.finalize()
    with tf1.Session(graph=graph) as sess:
        saver.restore(sess, sampler.ckpt)
        x, y = np.asarray(ids[:-1], np.int32), np.asarray(ids[1:], np.int32)
        full = len(x) // window
        state, total = sess.run(m.initial_state), 0.0
        for k in range(full):
            feed = {m.input_data: x[None, k * window:(k + 1) * window],
                    m.targets: y[None, k * window:(k + 1) * window]}
            feed.update(m.state_feed(state))
            cost, state = sess.run([m.cost, m.final_state], feed)
            total += float(cost) * window
    for a, b in zip(x[full * window:], y[full * window:]):
        probs, state = sampler.step(a, state)
        total -= math.log(max(float(probs[b]), 1e-30))
    n = len(x)
    return (total / n if n else float("nan")), n


def text_ids(path, vocab, encoding="auto"):
    """Clean a raw text like data/parse.py; ids of known characters and the unknown count."""
    from data.parse import parse_file
    text, _ = parse_file(path, encoding)
    text = " " + text
    ids = [vocab[c] for c in text if c in vocab]
    return ids, len(text) - len(ids), len(text)


def line_lengths(text):
    return [len(line) for line in text.split(" ") if line]


def length_summary(lengths):
    if not lengths:
        return {}
    a = np.array(lengths)
    return {"mean": float(a.mean()), "p10": float(np.percentile(a, 10)),
            "median": float(np.median(a)), "p90": float(np.percentile(a, 90))}


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Cross-entropy, perplexity and copying/diversity/rhyme numbers for a "
                    "trained model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--save_dir", default="save", help="directory train.py saved into")
    p.add_argument("--text", default=None,
                   help="text to score (raw lyrics, cleaned like data/parse.py); default: "
                        "the held-out tail of the training text")
    p.add_argument("--encoding", default="auto", help="encoding of --text")
    p.add_argument("--samples", type=non_negative_int, default=10,
                   help="generated samples to measure (0 = none)")
    p.add_argument("--n", type=positive_int, default=200, help="characters per sample")
    p.add_argument("--start", default="", help="start text of the samples")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--max_copy", type=non_negative_int, default=8,
                   help="sample.py's no-copy rule while sampling (0 = off, to measure the "
                        "raw model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample")
    p.add_argument("--latest", action="store_true", help="use the latest checkpoint")
    args = p.parse_args(argv)

    from sample import Sampler, start_ids
    from craft import CorpusMatcher, distinct_n, rhyme_rate
    s = Sampler(args.save_dir, latest=args.latest, max_copy=args.max_copy,
                warn=lambda m: print(m, file=sys.stderr))
    V = len(s.chars)
    result = {"checkpoint": s.ckpt, "vocab_size": V}

    if args.text:
        ids, unknown, total = text_ids(args.text, s.vocab, args.encoding)
        source = args.text
    else:
        if s.corpus is None:
            raise UserError(f"{args.save_dir}/corpus.npy is missing, so there is no held-out "
                            f"text to score; pass --text")
        val_frac = float(s.config.get("val_frac", 0.05))
        n_val = int(len(s.corpus) * val_frac)
        if n_val < 2:
            raise UserError("the model was trained without a validation split; pass --text")
        ids, unknown, total = list(s.corpus[-n_val:]), 0, n_val
        source = f"held-out tail of the training text ({val_frac:.0%})"
    ce, n = cross_entropy_windowed(s, ids)
    result.update(text=source, chars=total, unknown_chars=unknown,
                  unknown_share=unknown / total if total else None, scored=n,
                  cross_entropy=ce, perplexity=perplexity(ce))
    print(f"text: {source}")
    print(f"  {n:,} characters scored; {unknown:,} of {total:,} ({result['unknown_share']:.1%}) "
          f"outside the vocabulary, skipped")
    print(f"  cross-entropy {ce:.4f} nats/char, perplexity {result['perplexity']:.1f} "
          f"(uniform would be {V:,})")

    if args.samples:
        matcher = CorpusMatcher(s.corpus, V) if s.corpus is not None else None
        _, start = start_ids(args.start, s.vocab, warn=lambda m: None)
        rows = []
        for k in range(args.samples):
            out = s.generate(start, args.n, "weighted", args.temperature, 0, args.seed + k)
            text = (args.start + s.decode(out)).strip()
            seq = [s.vocab[c] for c in text if c in s.vocab]
            row = {"distinct_1": distinct_n(text.replace(" ", ""), 1),
                   "distinct_2": distinct_n(text.replace(" ", ""), 2),
                   "rhyme_rate": rhyme_rate(text.split(" ")),
                   "lines": line_lengths(text)}
            if matcher is not None:
                row["longest_copied_run"] = matcher.longest_run(seq)[0]
                row["share_4grams_in_training"] = matcher.ngram_share(seq, 4)
                row["share_8grams_in_training"] = matcher.ngram_share(seq, 8)
            rows.append(row)

        def mean(key):
            vals = [r[key] for r in rows if r.get(key) is not None]
            return float(np.mean(vals)) if vals else None
        gen_lengths = [x for r in rows for x in r["lines"]]
        summary = {k: mean(k) for k in ("distinct_1", "distinct_2", "rhyme_rate",
                                         "share_4grams_in_training",
                                         "share_8grams_in_training")}
        if matcher is not None:
            summary["longest_copied_run_max"] = max(r["longest_copied_run"] for r in rows)
            summary["longest_copied_run_mean"] = mean("longest_copied_run")
        summary["line_length_samples"] = length_summary(gen_lengths)
        if s.corpus is not None:
            train_text = s.decode(s.corpus[:200000])
            summary["line_length_training"] = length_summary(line_lengths(train_text))
        result["samples"] = dict(count=args.samples, n=args.n, temperature=args.temperature,
                                 max_copy=args.max_copy, **summary)
        print(f"{args.samples} samples of {args.n} characters (temperature "
              f"{args.temperature}, max_copy {args.max_copy}):")
        for key, label in (("longest_copied_run_max", "longest verbatim run (max)"),
                           ("longest_copied_run_mean", "longest verbatim run (mean)"),
                           ("share_4grams_in_training", "4-grams found in training"),
                           ("share_8grams_in_training", "8-grams found in training"),
                           ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"),
                           ("rhyme_rate", "rhyme rate")):
            v = summary.get(key)
            if v is not None:
                print(f"  {label:30s} {v:.3f}" if isinstance(v, float) else
                      f"  {label:30s} {v}")
        for key, label in (("line_length_samples", "line length, samples"),
                           ("line_length_training", "line length, training")):
            d = summary.get(key)
            if d:
                print(f"  {label:30s} mean {d['mean']:.1f}, median {d['median']:.0f}, "
                      f"p10-p90 {d['p10']:.0f}-{d['p90']:.0f}")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    run_main(main, "evaluate.py")

"""Honest quality numbers for a trained model.

    python analysis/evaluate.py [--save_dir save] [--text my_heldout_lyrics.txt] [--samples 20]
    python analysis/evaluate.py --save_dir save/scratch save/finetuned --text held.txt

* Cross-entropy per character (nats) and perplexity on a text: --text (raw lyrics, cleaned
  the same way as data/parse.py does), or by default the held-out validation part of the
  (first) model's training text (the blocks train.py held out).  Several --save_dir
  models are scored on the same text, even when their vocabularies differ: every
  character of the text is counted.  One
  outside a model's vocabulary cannot be predicted by it; it is charged OOV_NATS =
  ln(20,902), a uniform guess over the CJK characters data/parse.py keeps (generous: a
  model's own rare characters usually cost more), and is skipped as the next input.  The
  perplexity over the known characters only is reported beside it.
* State robustness (--offsets K, default 8): the known characters' cross-entropy from the
  zero state starting at K evenly spaced places of the text (wrapping round), and the
  spread max/min - 1.  A model that only does well once its state has warmed up in a
  particular way shows a wide spread.
* Fluency (craft.word_share): the share of characters in jieba dictionary words of 2+
  characters, for the scored text, for the samples and for as many windows of the
  training text as there are samples.
* For --samples generated samples (sample.py's sampler, its default no-copy rule unless
  --max_copy 0): the longest run found verbatim in the training text, the share of 4- and
  8-grams found there, distinct-1/2, rhyme rate, and the line-length distribution next to
  the training text's.

Prints a table and, as the last line, one JSON object.
"""
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from craft import DEFAULT_MAX_COPY  # noqa: E402
from engine import MAX_N, RULES  # noqa: E402
from modeldir import restore_weights  # noqa: E402
from sampler import MAX_COUNT, TEMPERATURES, seed_int  # noqa: E402
from utils import (ArgumentParser, HelpFormatter, UserError, float_in, int_in,  # noqa: E402                    non_negative_int, float_in, int_in,
                   non_negative_int, perplexity, run_main)

# The cost of a character outside a model's vocabulary: ln of the number of characters
# data/parse.py keeps (U+4E00-U+9FA5), i.e. a uniform guess among them.
OOV_NATS = math.log(0x9FA5 - 0x4E00 + 1)


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
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    from seq2seq_rnn import Model
    graph = tf.Graph()
    with graph.as_default():
        m = Model(dict(sampler.config, batch_size=1, seq_length=window), training=False)
        saver = tf1.train.Saver(tf1.global_variables())
        variables = tf1.global_variables()
    graph.finalize()
    with tf1.Session(graph=graph) as sess:
        restore_weights(sess, saver, sampler.ckpt, variables)
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


def offset_spread(sampler, ids, offsets=8, window=64):
    """State robustness: the cross-entropy of the same text scored from the zero state
    starting at `offsets` places (k * n / offsets, wrapping round to the start), all in
    one batch of `offsets` rows.  Full windows only (the last n % window pairs are left
    out).  Returns the list of cross-entropies, or None (attention models, short texts)."""
    if sampler.config.get("attention") or offsets < 2:
        return None
    x, y = np.asarray(ids[:-1], np.int32), np.asarray(ids[1:], np.int32)
    full = len(x) // window
    if full < offsets:
        return None
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    from seq2seq_rnn import Model
    starts = [k * len(x) // offsets for k in range(offsets)]
    xs = np.stack([np.roll(x, -a)[:full * window] for a in starts])    # [offsets, n']
    ys = np.stack([np.roll(y, -a)[:full * window] for a in starts])
    graph = tf.Graph()
    with graph.as_default():
        m = Model(dict(sampler.config, batch_size=offsets, seq_length=window),
                  training=False)
        saver = tf1.train.Saver(tf1.global_variables())
        variables = tf1.global_variables()
    graph.finalize()
    total = np.zeros(offsets)
    with tf1.Session(graph=graph) as sess:
        restore_weights(sess, saver, sampler.ckpt, variables)
        state = sess.run(m.initial_state)
        for k in range(full):
            feed = {m.input_data: xs[:, k * window:(k + 1) * window],
                    m.targets: ys[:, k * window:(k + 1) * window]}
            feed.update(m.state_feed(state))
            cost, state = sess.run([m.row_cost, m.final_state], feed)
            total += cost
    return [float(v) for v in total / full]


def read_text(path, encoding="auto"):
    """A raw text cleaned like data/parse.py, with the leading line start."""
    from data.parse import parse_file
    text, _ = parse_file(path, encoding)
    return " " + text


def text_ids(text, vocab):
    """Ids of the characters of text the model knows, and how many predictions (targets
    after the first character) fall on a character it does not know."""
    ids = [vocab[c] for c in text if c in vocab]
    unknown = sum(1 for c in text[1:] if c not in vocab)
    return ids, unknown


def score(sampler, text, offsets=8):
    """Cross-entropy of the whole text (unknown characters charged OOV_NATS) and of the
    known ones only, and (offsets > 1) the known characters' cross-entropy from the zero
    state at `offsets` places; see the module docstring."""
    ids, unknown = text_ids(text, sampler.vocab)
    if len(ids) < 2:
        ce_known, n = float("nan"), 0          # nothing known to predict
    else:
        ce_known, n = cross_entropy_windowed(sampler, ids)
    total = n + unknown
    ce = ((ce_known * n if n else 0.0) + unknown * OOV_NATS) / total if total \
        else float("nan")
    out = dict(chars=len(text), scored=total, unknown_chars=unknown,
               unknown_share=unknown / total if total else None,
               cross_entropy=ce, perplexity=perplexity(ce),
               cross_entropy_known=ce_known, perplexity_known=perplexity(ce_known))
    spread = offset_spread(sampler, ids, offsets)
    if spread:
        out.update(offsets=spread, offset_spread=max(spread) / min(spread) - 1)
    return out


def line_lengths(text):
    return [len(line) for line in text.split(" ") if line]


def length_summary(lengths):
    if not lengths:
        return {}
    a = np.array(lengths)
    return {"mean": float(a.mean()), "p10": float(np.percentile(a, 10)),
            "median": float(np.median(a)), "p90": float(np.percentile(a, 90))}


def held_out_text(sampler, save_dir):
    """The held-out part of the model's training text (the same split train.py made),
    as characters."""
    from preprocess import split_validation
    if sampler.corpus is None:
        raise UserError(f"{save_dir}/corpus.npy is missing, so there is no held-out text "
                        f"to score; pass --text")
    val_frac = float(sampler.config.get("val_frac", 0.05))
    how = sampler.config.get("val_split", "tail")
    _, held = split_validation(sampler.corpus, val_frac, how)
    if len(held) < 2:
        raise UserError("the model was trained without a validation split; pass --text")
    where = "tail" if how == "tail" else "part"
    return sampler.decode(held), \
        f"held-out {where} of {save_dir}'s training text ({val_frac:.0%})"


def sample_numbers(s, args):
    """Copying, diversity, rhyme and line-length numbers of args.samples samples."""
    from sampler import build_parser, start_ids, write_one
    from craft import distinct_n, longest_char_run, max_line_repeats, rhyme_rate, word_share
    matcher = s.matcher
    kept, start = start_ids(args.start, s.vocab, warn=lambda m: None)
    drawing = build_parser().parse_args([])        # sample.py's defaults, then ours
    for key, value in vars(args).items():
        if key in vars(drawing) and key not in ("save_dir", "seed", "latest"):
            setattr(drawing, key, value)
    rows = []
    for k in range(args.samples):
        text = write_one(s, drawing, start, kept, args.seed + k)["text"]
        seq = [s.vocab[c] for c in text if c in s.vocab]
        row = {"distinct_1": distinct_n(text.replace(" ", ""), 1),
               "distinct_2": distinct_n(text.replace(" ", ""), 2),
               "rhyme_rate": rhyme_rate(text.split(" ")),
               "longest_char_run": longest_char_run(text),
               "max_line_repeats": max_line_repeats(text),
               "word_share": word_share(text),
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
                                     "share_8grams_in_training", "word_share")}
    summary["longest_char_run_max"] = max(r["longest_char_run"] for r in rows)
    summary["max_line_repeats"] = max(r["max_line_repeats"] for r in rows)
    if matcher is not None:
        summary["longest_copied_run_max"] = max(r["longest_copied_run"] for r in rows)
        summary["longest_copied_run_mean"] = mean("longest_copied_run")
    summary["line_length_samples"] = length_summary(gen_lengths)
    if s.corpus is not None:
        summary.update(training_figures(s, args))
    print_sample_numbers(summary, args)
    return dict(count=args.samples, n=args.n, temperature=args.temperature,
                max_copy=args.max_copy, **summary)


def training_figures(s, args):
    """The training text's own figures beside the samples': its line lengths, and the
    fluency and diversity of as many windows of the same length as there are samples."""
    from craft import distinct_n, text_windows, word_share
    train_text = s.decode(s.corpus[:200000])
    out = {"line_length_training": length_summary(line_lengths(train_text))}
    # the same number of windows of the same length, from the training text: what
    # the samples' fluency and diversity would be if they read like it
    windows = [s.decode(w) for w in
               text_windows(s.corpus, args.samples, args.n, args.seed)]
    for key, figure in (("word_share_training", word_share),
                        ("distinct_1_training", lambda t: distinct_n(t.replace(" ", ""), 1)),
                        ("distinct_2_training", lambda t: distinct_n(t.replace(" ", ""), 2))):
        vals = [v for v in map(figure, windows) if v is not None]
        out[key] = float(np.mean(vals)) if vals else None
    return out


def print_sample_numbers(summary, args):
    """sample_numbers' figures in words."""
    print(f"  {args.samples} samples of {args.n} characters (temperature "
          f"{args.temperature}, max_copy {args.max_copy}):")
    for key, label in (("longest_copied_run_max", "longest verbatim run (max)"),
                       ("longest_copied_run_mean", "longest verbatim run (mean)"),
                       ("share_4grams_in_training", "4-grams found in training"),
                       ("share_8grams_in_training", "8-grams found in training"),
                       ("distinct_1", "distinct-1"),
                       ("distinct_1_training", "distinct-1, training text"),
                       ("distinct_2", "distinct-2"),
                       ("distinct_2_training", "distinct-2, training text"),
                       ("rhyme_rate", "rhyme rate"),
                       ("longest_char_run_max", "one character in a row (max)"),
                       ("max_line_repeats", "same line (most times)"),
                       ("word_share", "in words (fluency), samples"),
                       ("word_share_training", "in words, training text")):
        v = summary.get(key)
        if v is not None:
            print(f"    {label:30s} {v:.3f}" if isinstance(v, float) else
                  f"    {label:30s} {v}")
    for key, label in (("line_length_samples", "line length, samples"),
                       ("line_length_training", "line length, training")):
        d = summary.get(key)
        if d:
            print(f"    {label:30s} mean {d['mean']:.1f}, median {d['median']:.0f}, "
                  f"p10-p90 {d['p10']:.0f}-{d['p90']:.0f}")


def json_safe(obj):
    """NaN/inf are not JSON: they become null (a perplexity that overflowed, say)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def build_parser():
    p = ArgumentParser(
        description="Cross-entropy, perplexity and copying/diversity/rhyme numbers for "
                    "one or more trained models, on the same text.",
        formatter_class=HelpFormatter)
    p.add_argument("--save_dir", nargs="+", default=["save"], metavar="DIR",
                   help="directories train.py saved into; several are compared on the same "
                        "text (e.g. a model trained from scratch and a fine-tuned one)")
    p.add_argument("--text", default=None,
                   help="text to score (raw lyrics, cleaned like data/parse.py); default: "
                        "the held-out part of the first model's training text")
    p.add_argument("--encoding", default="auto", help="encoding of --text")
    p.add_argument("--samples", type=int_in(0, MAX_COUNT), default=10,
                   help="generated samples to measure (0 = none)")
    p.add_argument("--n", type=int_in(1, MAX_N), default=200, help="characters per sample")
    p.add_argument("--start", default="", help="start text of the samples")
    p.add_argument("--temperature", type=float_in(*TEMPERATURES), default=1.0,
                   help="sampling temperature")
    p.add_argument("--lines", type=int_in(1, MAX_N // 2), default=None,
                   help="samples of this many lines instead of --n characters")
    g = p.add_argument_group("sampling rules, as sample.py has them (--max_copy 0 "
                             "measures the raw model)")
    for rule in RULES:
        rule.add_flags(g)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the first sample")
    p.add_argument("--offsets", type=non_negative_int, default=8,
                   help="state robustness: also score the text from the zero state "
                        "starting at this many evenly spaced places and report the spread "
                        "(0 or 1 = off)")
    p.add_argument("--latest", action="store_true", help="use the latest checkpoint")
    return p


def print_scores(save_dir, s, source, result):
    """One model's scores on the text, in words."""
    print(f"{save_dir} ({s.ckpt}, vocabulary {len(s.chars):,}) on {source}:")
    print(f"  {result['scored']:,} characters scored; {result['unknown_chars']:,} "
          f"({result['unknown_share']:.1%}) outside the vocabulary, charged "
          f"{OOV_NATS:.2f} nats each")
    known = (f"{result['perplexity_known']:.1f}"
             if math.isfinite(result["cross_entropy_known"]) else "n/a, none known")
    print(f"  cross-entropy {result['cross_entropy']:.4f} nats/char, perplexity "
          f"{result['perplexity']:.1f} (known characters only: {known}; uniform would "
          f"be {len(s.chars):,})")
    if result.get("offsets"):
        print(f"  from the zero state at {len(result['offsets'])} places: "
              f"{min(result['offsets']):.4f}-{max(result['offsets']):.4f} nats "
              f"(spread {result['offset_spread']:.1%}; known characters, full windows)")
    if result["word_share_text"] is not None:
        print(f"  characters in words (fluency) of the text: "
              f"{result['word_share_text']:.3f}")


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    # the same bound as sample.py's on what one sample may draw (engine.check_budget)
    from engine import check_budget
    if check_budget(args, MAX_N):
        p.error(check_budget(args, MAX_N))
    if args.max_copy is None:
        args.max_copy = DEFAULT_MAX_COPY

    from sampler import Sampler

    text = read_text(args.text, args.encoding) if args.text else None
    source = args.text
    results = []
    for save_dir in args.save_dir:
        s = Sampler(save_dir, latest=args.latest, max_copy=args.max_copy,
                    warn=lambda m: print(m, file=sys.stderr))
        if text is None:
            text, source = held_out_text(s, save_dir)
        result = {"save_dir": save_dir, "checkpoint": s.ckpt, "vocab_size": len(s.chars),
                  "text": source}
        result.update(score(s, text, args.offsets))
        from craft import word_share
        result["word_share_text"] = word_share(text)
        print_scores(save_dir, s, source, result)
        if args.samples:
            result["samples"] = sample_numbers(s, args)
        results.append(result)
    if len(results) > 1:
        print("comparison on the same text (every character counted):")
        for r in sorted(results, key=lambda r: r["cross_entropy"]):
            print(f"  {r['save_dir']:30s} perplexity {r['perplexity']:8.1f}  cross-entropy "
                  f"{r['cross_entropy']:.4f}  unknown {r['unknown_chars']:,}")
    out = results[0] if len(results) == 1 else {"text": source, "models": results}
    print(json.dumps(json_safe(out), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    run_main(main, "evaluate.py")

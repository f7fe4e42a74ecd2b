"""Write lyrics with a trained model.

    python sample.py --start 从前 --n 200

Restores save/config.pkl, save/words_vocab.pkl and a checkpoint (the best-validation one
when there is one, else the latest) into the batch-1 inference graph, warms the state up on
the start text one character at a time from the zero state (as the article does), then
draws --n characters.  Plain sampling runs as one in-graph tf.while_loop (one Session.run
per sample); the text goes to stdout, one lyric line per line, and is appended to
result/sequence under a header saying how it was made.
"""
import argparse
import os
import re
import sys
import time

from utils import (ARCHITECTURE_KEYS, UserError, atomic_write_text, import_tensorflow, non_negative_int,
                   positive_float, positive_int, run_main, safe_load_pickle)

MODES = {"argmax": 0, "weighted": 1, "combined": 2}
SPACE = " "


def build_parser():
    p = argparse.ArgumentParser(
        description="Generate lyrics from a model trained by train.py.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--save_dir", default="save", help="directory train.py saved into")
    p.add_argument("--start", default="",
                   help="start text the lyrics continue (empty: start at a line start)")
    p.add_argument("--n", type=positive_int, default=200, help="characters to generate")
    p.add_argument("--sample", choices=list(MODES), default="weighted",
                   help="argmax: most probable character; weighted: draw from the "
                        "distribution; combined: weighted at a line start, argmax elsewhere")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="below 1 more conservative, above 1 more adventurous")
    p.add_argument("--top_k", type=non_negative_int, default=0,
                   help="draw only among the k most probable characters (0 = all)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed for reproducible output (default: a fresh one, shown "
                        "in the result header)")
    p.add_argument("--count", type=positive_int, default=1, help="number of samples")
    p.add_argument("--raw", action="store_true",
                   help="print spaces (line ends) as spaces instead of line breaks")
    p.add_argument("--out", default=os.path.join("result", "sequence"),
                   help="file the samples are appended to ('' = none)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--latest", action="store_true",
                   help="use the latest checkpoint instead of the best-validation one")
    g.add_argument("--ckpt", default=None,
                   help="use this checkpoint prefix, e.g. save/model.ckpt-2000")
    p.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is visible")
    return p


# --------------------------------------------------------------------- saved model


def read_checkpoint_state(save_dir, state_file):
    """The model_checkpoint_path in save_dir/<state_file>, or None (no TensorFlow)."""
    path = os.path.join(save_dir, state_file)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        m = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', f.read(), re.M)
    if not m:
        return None
    ckpt = m.group(1)
    return ckpt if os.path.isabs(ckpt) else os.path.join(save_dir, ckpt)


def find_checkpoint(save_dir, ckpt=None, latest=False):
    """Pick the checkpoint to restore: --ckpt, else best (unless --latest), else latest."""
    if ckpt:
        if not os.path.exists(ckpt + ".index"):
            raise UserError(f"--ckpt {ckpt}: no such checkpoint ({ckpt}.index is missing); "
                            f"pass a prefix like {os.path.join(save_dir, 'model.ckpt-1000')}")
        return ckpt
    found = None
    if not latest:
        found = read_checkpoint_state(save_dir, "checkpoint_best")
    if found is None or not os.path.exists(found + ".index"):
        found = read_checkpoint_state(save_dir, "checkpoint")
    if found is None or not os.path.exists(found + ".index"):
        raise UserError(f"no trained model in {save_dir}/: train one first, e.g. "
                        f"python train.py --rnncell lstm --save_dir {save_dir}")
    return found


def load_saved(save_dir):
    """config dict and (chars, vocab) from save_dir, checked to belong together."""
    cfg_path = os.path.join(save_dir, "config.pkl")
    vocab_path = os.path.join(save_dir, "words_vocab.pkl")
    for path in (cfg_path, vocab_path):
        if not os.path.exists(path):
            raise UserError(f"{path} is missing: {save_dir}/ was not written by train.py "
                            f"(train first: python train.py --save_dir {save_dir})")
    config = safe_load_pickle(cfg_path, "model config")
    words = safe_load_pickle(vocab_path, "vocabulary file")
    if not isinstance(config, dict) or any(k not in config for k in ARCHITECTURE_KEYS):
        raise UserError(f"{cfg_path} is not a model config written by train.py")
    if not (isinstance(words, (tuple, list)) and len(words) == 2
            and isinstance(words[0], (list, tuple)) and isinstance(words[1], dict)):
        raise UserError(f"{vocab_path} is not a vocabulary written by train.py")
    chars, vocab = list(words[0]), dict(words[1])
    if len(chars) != config["vocab_size"] or any(vocab.get(c) != i
                                                  for i, c in enumerate(chars)):
        raise UserError(f"{vocab_path} ({len(chars)} characters) does not belong to "
                        f"{cfg_path} (vocab_size {config['vocab_size']}): they are from "
                        f"different models; retrain or restore both files")
    return config, chars, vocab


def start_ids(start, vocab, warn=print):
    """Ids of the start text; characters the model never saw are skipped with a warning.

    Line breaks count as line ends (spaces).  With nothing left, start at a line start.
    """
    text = " ".join(start.split()) if start.strip() else ""
    unknown = sorted({c for c in text if c not in vocab})
    if unknown:
        warn(f"sample.py: warning: skipping characters the model never saw: "
             f"{''.join(unknown)}")
    kept = "".join(c for c in text if c in vocab)
    if not kept:
        return "", [vocab[SPACE]] if SPACE in vocab else [0]
    return kept, [vocab[c] for c in kept]


# ------------------------------------------------------------------------- sampler


class Sampler:
    """A restored inference graph: fast whole-sample generation, and single steps for
    samplers that must decide in Python between characters."""

    def __init__(self, save_dir="save", ckpt=None, latest=False, cpu=False):
        self.config, self.chars, self.vocab = load_saved(save_dir)
        self.ckpt = find_checkpoint(save_dir, ckpt, latest)
        if cpu:
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        tf = import_tensorflow()
        from seq2seq_rnn import Model
        tf1 = tf.compat.v1
        self.space_id = self.vocab.get(SPACE, 0)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.model = Model(self.config, infer=True)
            self.model.build_generator(self.space_id)
            saver = tf1.train.Saver(tf1.global_variables())
        self.graph.finalize()
        self.sess = tf1.Session(graph=self.graph)
        try:
            saver.restore(self.sess, self.ckpt)
        except tf.errors.OpError as e:
            first = str(e.message).strip().splitlines()[0][:160]
            raise UserError(f"checkpoint {self.ckpt} does not match {save_dir}/config.pkl "
                            f"({type(e).__name__}: {first}); pick a checkpoint of this "
                            f"model with --ckpt, or retrain")
        m = self.model
        self._step = self.sess.make_callable(
            [m.probs, m.final_state], [m.input_data] + list(tf.nest.flatten(m.initial_state)))
        self._zero = self.sess.run(m.initial_state)
        self._flatten, self._pack = tf.nest.flatten, tf.nest.pack_sequence_as

    def generate(self, ids, n, mode="weighted", temperature=1.0, top_k=0, seed=0):
        """Warm up on ids, then draw n ids, all in one Session.run."""
        m = self.model
        return self.sess.run(m.gen_ids, {
            m.gen_start: ids, m.gen_n: n, m.gen_mode: MODES[mode],
            m.gen_temperature: temperature, m.gen_top_k: top_k, m.gen_seed: seed})

    def zero_state(self):
        return self._zero

    def step(self, x, state):
        """Feed one id; returns (probabilities [V], new state)."""
        probs, state = self._step([[x]], *self._flatten(state))
        return probs[0], state

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


def show(text, raw):
    return text if raw else "\n".join(line for line in text.split(SPACE))


def append_result(path, header, body):
    """Append header + body to path by rewriting it whole (temp file, then rename)."""
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            old = f.read()
    atomic_write_text(path, old + header + "\n" + body.rstrip("\n") + "\n\n")


def main(argv=None):
    args = build_parser().parse_args(argv)
    sampler = Sampler(args.save_dir, args.ckpt, args.latest, args.cpu)
    kept, ids = start_ids(args.start, sampler.vocab,
                          warn=lambda msg: print(msg, file=sys.stderr))
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    texts = []
    for k in range(args.count):
        t0 = time.perf_counter()
        out = sampler.generate(ids, args.n, args.sample, args.temperature, args.top_k,
                               seed + k)
        text = (kept + sampler.decode(out)).strip()
        texts.append(text)
        print(show(text, args.raw) + ("\n" if k + 1 < args.count else ""), flush=True)
        if k == 0:
            gen_ms = (time.perf_counter() - t0) * 1000
    print(f"sample.py: {args.count} x {args.n} characters from {sampler.ckpt} "
          f"(first sample {gen_ms:.0f} ms), seed {seed}", file=sys.stderr)
    if args.out:
        header = (f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} | checkpoint {sampler.ckpt} | "
                  f"start {args.start!r} | n {args.n} | sample {args.sample} | temperature "
                  f"{args.temperature} | top_k {args.top_k} | seed {seed} | count "
                  f"{args.count} ===")
        append_result(args.out, header, "\n\n".join(show(t, args.raw) for t in texts))
    return 0


if __name__ == "__main__":
    run_main(main, "sample.py")

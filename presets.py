"""Named training presets: the one place where the recipes' hyperparameters are written.

    python train.py --preset base-cpu --data_dir data/base --save_dir save/base
    python train.py --preset large --rnn_size 256      # a flag given on the command line wins

train.py takes its defaults from "seed", scripts/base.sh trains "base-cpu" or "base-gpu",
and bench/speed.py measures "seed", "large" and "base-cpu".  No module imports TensorFlow
here, so `train.py --help` can list them at once.
"""

PRESETS = {
    # train.py's defaults: a few hundred songs to the Song ci, on a laptop CPU
    "seed": dict(rnncell="lstm", embedding_size=100, num_layers=2, rnn_size=128,
                 batch_size=32, seq_length=16, learning_rate=0.001),
    # the article's size class: the bench's big row
    "large": dict(rnncell="lstm", embedding_size=100, num_layers=2, rnn_size=512,
                  batch_size=64, seq_length=64, learning_rate=0.001),
    # the base model on a 2-core CPU in an hour (README "A base model", measured there):
    # Adam 0.001/0.002 stuck at the unigram loss at this size, 0.0005 not; 32 x 16 gives
    # 4x the updates of 64 x 32 for 15 % less throughput; the 6,000 most frequent
    # characters (99.8 % of the text) make a step 1.5x faster than all 11 k; the rate
    # falls to a tenth over the hour.
    "base-cpu": dict(rnncell="lstm", embedding_size=128, num_layers=2, rnn_size=256,
                     batch_size=32, seq_length=16, learning_rate=0.0005, max_vocab=6000,
                     anneal=True, num_epochs=20, patience=2, save_every=1000,
                     sampled_softmax=256),
    # the same on a GPU, which wants batches of hundreds (not run: no GPU was available)
    "base-gpu": dict(rnncell="lstm", embedding_size=256, num_layers=2, rnn_size=512,
                     batch_size=256, seq_length=64, learning_rate=0.0005, anneal=True,
                     num_epochs=20, patience=2, save_every=1000),
}

SEED = PRESETS["seed"]


def describe(name):
    """One line for --help: the preset's flags."""
    return " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in PRESETS[name].items())

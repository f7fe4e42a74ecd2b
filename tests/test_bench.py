"""bench/speed.py's arithmetic: FLOPs per character from the shapes, the matmul limit."""
import math

from bench.speed import CONFIGS, _row_text, flops_per_char, matmul_peak


def test_flops_per_character_by_hand():
    cfg = dict(embedding_size=10, num_layers=2, rnn_size=20, batch_size=2, seq_length=3)
    # lstm: layer 0 (10 + 20) x 80, layer 1 (20 + 20) x 80, softmax 20 x 50 multiply-adds;
    # x2 FLOPs each, x3 for forward + backward
    assert flops_per_char(cfg, 50, "lstm") == 6 * (30 * 80 + 40 * 80 + 20 * 50)
    assert flops_per_char(cfg, 50, "rnn") == 6 * (30 * 20 + 40 * 20 + 20 * 50)
    # the seed config at V = 2,500: the 3.4 MFLOP/char quoted for it
    assert abs(flops_per_char(CONFIGS["seed"], 2500, "lstm") / 1e6 - 3.41) < 0.01


def test_matmul_peak_is_a_throughput_and_rows_print_the_share():
    cfg = dict(embedding_size=8, num_layers=1, rnn_size=16, batch_size=4, seq_length=4)
    peak = matmul_peak(cfg, 64, "gru", repeats=3)
    assert math.isfinite(peak) and peak > 0
    row = {"config": "seed", "rnncell": "gru", "tf_chars_per_s": 1000.0, "tf_val_loss": 5.0,
           "flops_per_char": 2e6, "peak_gflops": 100.0, "tf_gflops": 2.0,
           "tf_share_of_peak": 0.02}
    assert "2% of this machine's 100" in _row_text(row)

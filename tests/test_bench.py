"""bench/speed.py (and bench/limits.py's) arithmetic: FLOPs per character from the shapes, the matmul limit,
the ceiling no build can pass."""
import math
import os

import pytest

from bench.limits import ceiling_chars_per_s, flops_per_char, matmul_peak, update_floor
from bench.speed import CONFIGS, _row_text


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


def test_update_floor_times_the_models_own_weights():
    """The ceiling's update is timed over the Model's trainable variables: as many weights
    as the shapes flops_per_char counts (embedding, each layer's [in + H, G*H] kernel and
    bias, softmax [H, V] and bias), so a change to the model that the FLOP count misses
    fails here."""
    cfg = dict(embedding_size=8, num_layers=2, rnn_size=16, batch_size=4, seq_length=4)
    V, E, H = 64, 8, 16
    for cell, G in (("lstm", 4), ("gru", 3), ("rnn", 1)):
        floor = update_floor(cfg, V, cell, repeats=2, chain=2)
        assert floor["params"] == V * E + (E + H) * G * H + 2 * H * G * H + 2 * G * H \
            + H * V + V, cell
        assert 0 < floor["update_s"] < 1 and 0 < floor["logits_pass_s"] < 1


def test_ceiling_adds_the_unavoidable_work_to_the_matmuls_at_the_limit():
    cfg = dict(batch_size=32, seq_length=16)                 # 512 characters a step
    # 10 MFLOP/char at 100 GFLOP/s: 51.2 ms of matmuls; + 8 ms update + 0.8 ms exp pass
    ceiling = ceiling_chars_per_s(cfg, 1e7, 100.0, {"update_s": 0.008, "logits_pass_s": 0.0008})
    assert abs(ceiling - 512 / 0.060) < 1e-6
    # with nothing but matmuls it is the limit itself
    assert abs(ceiling_chars_per_s(cfg, 1e7, 100.0, {"update_s": 0, "logits_pass_s": 0})
               - 1e4) < 1e-6
    row = {"config": "base", "rnncell": "lstm", "tf_chars_per_s": 7400.0, "tf_val_loss": 5.0,
           "flops_per_char": 2.26e7, "peak_gflops": 286.0, "tf_gflops": 167.0,
           "tf_share_of_peak": 0.58, "torch_chars_per_s": 7400.0, "torch_runs": [7400.0],
           "ratio_vs_torch": 1.0, "torch_share_of_peak": 0.59, "params": 5173802,
           "update_s": 0.008, "logits_pass_s": 0.0025, "ceiling_chars_per_s": 10200.0,
           "ceiling_share_of_peak": 0.81, "tf_share_of_ceiling": 0.725,
           "ceiling_vs_torch": 10200 / 7400}
    text = _row_text(row)
    assert "ceiling 10.2k chars/s" in text and "5.17 M weights 8.0 ms" in text
    assert "= 81% of the limit; ours at 72% of it" in text
    assert "no build can beat torch by more than 1.38x here" in text


def test_base_config_is_the_base_recipes_cpu_model():
    """The bench's "base" row measures what scripts/base.sh trains on a CPU: both take it
    from presets.py."""
    import os
    from presets import PRESETS
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "scripts", "base.sh"), encoding="utf-8") as f:
        recipe = f.read()
    assert "*) model=(--preset base-cpu)" in recipe
    assert "cpu-bf16) model=(--preset base-cpu --bf16)" in recipe
    assert "--rnn_size" not in recipe.split("set -euo pipefail")[1]    # no second copy
    assert CONFIGS["base"] == {k: v for k, v in PRESETS["base-cpu"].items()
                               if k in CONFIGS["base"]}
    assert CONFIGS["base"]["max_vocab"] == 6000 and CONFIGS["base"]["rnn_size"] == 256


def test_capped_text_keeps_the_most_frequent_characters(tmp_path):
    from bench.speed import capped_text, load_ids
    text = tmp_path / "t.txt"
    text.write_text("甲甲甲乙乙丙 甲乙", encoding="utf-8")
    chars, ids = load_ids(str(text))
    path = capped_text(str(text), chars, ids, 3)      # 甲, 乙 and the space
    assert open(path, encoding="utf-8").read() == "甲甲甲乙乙 甲乙"


def test_rows_without_validation_or_reference_still_print():
    """A text too small for one validation batch (the large config on 宋词三百首) and a
    failed reference give a row, not a crash."""
    row = {"config": "large", "rnncell": "lstm", "tf_chars_per_s": 7000.0, "tf_runs": [7e3, 7.1e3],
           "tf_val_loss": None, "flops_per_char": 2e7, "peak_gflops": 280.0,
           "tf_gflops": 140.0, "tf_share_of_peak": 0.5, "torch_error": "no torch",
           "plain_chars_per_s": 6000.0, "plain_val_loss": None,
           "bf16_chars_per_s": 9000.0, "bf16_val_loss": None, "bf16_peak_gflops": 800.0}
    text = _row_text(row)
    assert "torch failed: no torch" in text and "held-out loss" not in text
    assert "runs 7.0k, 7.1k" in text and "50% of this machine's 280" in text
    row.update(tf_val_loss=5.0, bf16_val_loss=5.01, torch_chars_per_s=10000.0,
               torch_runs=[1e4], ratio_vs_torch=0.7, torch_share_of_peak=0.71)
    text = _row_text(row)
    assert "ours / torch = 0.70x" in text and "(+0.20% vs float32)" in text


@pytest.mark.serial
def test_cpu_watch_counts_other_programs_not_the_bench_itself():
    """A row must say when something else used the CPU: a busy process that is not the
    bench's (not yet reaped) shows in others_share, the bench's own busy loop does not."""
    import subprocess
    import sys
    import time
    from bench.speed import IDLE_SHARE, CpuWatch
    if CpuWatch._busy() is None:
        pytest.skip("no /proc/stat on this system")
    watch = CpuWatch()
    t = time.monotonic()
    while time.monotonic() - t < 1.0:            # our own work: one core for a second
        pass
    own = watch.stop()
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nt = time.monotonic()\n"
                             "while time.monotonic() - t < 3: pass"])
    try:
        time.sleep(0.5)                          # the new interpreter is running by now
        watch = CpuWatch()
        time.sleep(1.5)
        other = watch.stop()
    finally:
        busy.kill()
        busy.wait()
    cores = os.cpu_count() or 1
    # one busy core out of `cores`, the bench idle: others used about 1/cores of the CPU
    assert other["others_share"] > 0.6 / cores, other
    assert own["others_share"] < other["others_share"] - 0.3 / cores, (own, other)
    row = {"config": "seed", "rnncell": "lstm", "tf_chars_per_s": 1e4, **other}
    assert "NOT IDLE" in _row_text(row) and other["others_share"] > IDLE_SHARE
    assert "load average" in _row_text(row)


@pytest.mark.slow
def test_bench_runs_the_large_config_on_a_small_text(tmp_path):
    """`--config large` on a text with no full validation batch prints its rows and the
    JSON line (it once died formatting the missing loss); a text shorter than one batch
    gets a 'skipped' row, not a traceback."""
    import json
    from conftest import made_up_text, run
    small = tmp_path / "small.txt"
    small.write_text(made_up_text(2000), encoding="utf-8")          # ~18 k characters
    tiny = tmp_path / "tiny.txt"
    tiny.write_text(made_up_text(5), encoding="utf-8")
    proc = run("bench/speed.py", "--text", small, tiny, "--config", "large", "--rnncell",
               "rnn", "--steps", "2", "--warmup", "1", "--repeats", "1", "--no_sampling",
               "--torch_python", "", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    big, short = out["training"]
    assert big["config"] == "large" and big["tf_chars_per_s"] > 0
    assert big["tf_val_loss"] is None and 0 < big["tf_share_of_peak"] < 2
    assert "fewer than one training batch of 64 x 64" in short["skipped"]
    assert "skipped:" in proc.stdout


def test_the_sampled_row_is_the_base_recipe_as_trained_and_labelled(tmp_path):
    """`--config sampled`: the base config with the preset's --sampled_softmax, timed
    without a reference ratio or a ceiling (both count every logit), and said so."""
    import json
    from conftest import run
    from presets import PRESETS
    assert CONFIGS["sampled"] == dict(CONFIGS["base"],
                                      sampled_softmax=PRESETS["base-cpu"]["sampled_softmax"])
    import random
    rng = random.Random(0)                      # about 1,500 distinct characters > S
    text = tmp_path / "t.txt"
    text.write_text("".join(chr(0x4E00 + rng.randrange(1500)) for _ in range(20000)),
                    encoding="utf-8")
    proc = run("bench/speed.py", "--text", text, "--config", "sampled", "--rnncell", "lstm",
               "--steps", "2", "--warmup", "1", "--repeats", "1", "--no_sampling",
               "--no_quality", "--torch_python", "", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row, = json.loads(proc.stdout.strip().splitlines()[-1])["training"]
    assert row["sampled_softmax"] == CONFIGS["sampled"]["sampled_softmax"]
    assert row["tf_chars_per_s"] > 0 and "ceiling_chars_per_s" not in row
    assert "softmax sampled over" in proc.stdout and "no reference row" in proc.stdout


def test_bad_bench_arguments_exit_2_with_one_clear_line(tmp_path):
    from conftest import assert_one_line_error, run
    assert_one_line_error(run("bench/speed.py", "--text", tmp_path / "missing.txt"), 2,
                          "missing.txt not found")
    assert_one_line_error(run("bench/speed.py", "--steps", "0"), 2,
                          "--steps and --repeats must be at least 1")


@pytest.mark.slow
def test_sampling_figures_time_the_engine_at_each_vocabulary_size(tmp_path):
    """The sampling rows: a model of each asked size is made and timed through the same
    write_one() sample.py uses, and a streamed request's first character comes before
    the whole request's answer would."""
    from bench.sampling import sampling_figures
    from conftest import made_up_text
    data = tmp_path / "data"
    data.mkdir()
    (data / "lyrics.txt").write_text(made_up_text(400), encoding="utf-8")
    out = sampling_figures(str(data), sizes=(300,), repeats=2)
    assert [row["vocab_size"] for row in out["sizes"]] == [300]
    import pickle
    with open(data / "v300" / "save" / "words_vocab.pkl", "rb") as f:
        assert len(pickle.load(f)[0]) == 301            # 300 characters + the line end
    for key in ("sample_200_s", "sample_process_s", "serve_startup_s",
                "serve_request_200_s", "stream_first_char_s"):
        assert 0 < out[key] < 60, (key, out[key])
    assert out["stream_first_char_s"] < out["serve_request_200_s"]
    assert 0 < out["sizes"][0]["lines_8_rhyme_s"] < 60
    worst = out["worst_rules"]                      # the costliest rules, per character
    assert worst["vocab_size"] == 300 and 0 < worst["per_char_s"] < 1
    assert worst["plain_per_char_s"] == out["sizes"][0]["sample_200_s"] / 200


def test_a_row_behind_the_reference_says_how_much_is_the_kernel_and_how_much_ours():
    from bench.limits import gap_split
    assert gap_split(5000, 6000, 5500) == (500, 500)     # half above the ceiling
    assert gap_split(5000, 6000, 9000) == (0, 1000)      # all ours: the ceiling is higher
    assert gap_split(5600, 6000, 5500) == (500, 0)       # at the ceiling: all the kernel's
    assert gap_split(7000, 6000, 5500) == (0, 0)         # ours leads
    row = dict(config="large", rnncell="lstm", tf_chars_per_s=5000, torch_chars_per_s=6000,
               ratio_vs_torch=5 / 6, torch_share_of_peak=0.8, ceiling_chars_per_s=5500,
               ceiling_share_of_peak=0.9, tf_share_of_ceiling=0.91, params=1e6,
               update_s=0.001, logits_pass_s=0.001, ceiling_vs_torch=0.92,
               gap_kernel=500, gap_ours=500)
    assert ("behind torch by 1.0k chars/s: 0.5k of it the matmul kernel (the ceiling is "
            "below torch), 0.5k ours") in _row_text(row)
    assert "behind torch" not in _row_text(dict(row, gap_kernel=0, gap_ours=0))

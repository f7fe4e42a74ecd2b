"""TensorFlow's environment, by what the process does: the quiet import (after argument
parsing, so `--help` stays instant), oneDNN's default by role, --cpu, the session config
(bfloat16, inline steps), and the CPU facts the logs and the bench record.

Nothing here imports TensorFlow at module level.
"""
import os
import sys


class silence_stderr:
    """Send file descriptor 2 to /dev/null for a while.

    TensorFlow's C++ side prints start-up notes (oneDNN, CUDA drivers) before its log
    level is read, so TF_CPP_MIN_LOG_LEVEL cannot hide them; Python exceptions raised
    inside still show, because they are printed after the descriptor is restored.
    """

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


# The environment TensorFlow is imported into; a variable the user has set wins.
TF_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # TensorFlow imports Keras, which imports matplotlib.pyplot; a non-GUI backend makes
    # that import cheaper, and none of our scripts that use TensorFlow shows a window.
    "MPLBACKEND": "Agg",
}
# oneDNN's graph rewrites (its matmuls and fused element-wise kernels), by what the
# process does.  TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI,
# bfloat16 or AMX, and leaves an AVX2 CPU on its own default kernels.  Measured on a
# 2-core AMD EPYC with AVX2 only (2026-11-30, bench/speed.py): training 1.3-1.6x faster
# with them (seed config 11.9 k -> 18.1 k chars/s, base 3.9 k -> 5.7 k), the held-out loss
# after the same steps equal to 4 decimals; the batch-1 sampling step slower with them
# (200 characters at V 6 k: 215-223 ms -> 230-301 ms, alternating runs).  So training turns them on and sampling
# leaves TensorFlow's default.  A process reads the setting once, at its first graph, and
# a user's TF_ENABLE_ONEDNN_OPTS wins (0 off, 1 on, for every script).
ONEDNN_BY_ROLE = {"train": "1", "sample": None}


def tf_environment(role=None):
    """Set TF_ENVIRONMENT's defaults, and the oneDNN default of `role` ("train" or
    "sample"; None: leave it), before TensorFlow is imported (import_tensorflow)."""
    for key, value in TF_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if role is not None and ONEDNN_BY_ROLE[role] is not None:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", ONEDNN_BY_ROLE[role])


USER_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")     # before any default of ours


def child_environment():
    """os.environ for a child script, without this process's own oneDNN default: the
    child picks its own by its role (a bench that trains, then times sample.py)."""
    env = dict(os.environ)
    if USER_ONEDNN is None:
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    return env


def import_tensorflow(role="train", cpu=False):
    """Import TensorFlow quietly (call after argument parsing, so --help is instant).
    role: what the process does, "train" (and score in batches) or "sample" (one
    character at a time), which decides the oneDNN default (ONEDNN_BY_ROLE); the first
    call of a process decides.  cpu: hide every GPU from it (--cpu)."""
    if cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    tf_environment(role)
    with silence_stderr():
        import tensorflow as tf
        tf.config.list_physical_devices("GPU")   # its CUDA probe logs too
    tf.get_logger().setLevel("ERROR")
    tf.compat.v1.disable_eager_execution()
    return tf


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_text():
    """'<model name> (family F, model M; avx2, avx512f, ...)': which CPU, told apart
    where the model name is only 'AMD EPYC' (Milan is family 25 model 1, Genoa model 17),
    and the vector units that rank the builds."""
    info = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
                if key.strip() == "flags":
                    break
    except OSError:
        pass
    units = [u for u in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if u in cpu_flags()]
    parts = [f"family {info['cpu family']}, model {info['model']}"] \
        if "cpu family" in info and "model" in info else []
    if units:
        parts.append(", ".join(units))
    text = info.get("model name", sys.platform)
    return f"{text} ({'; '.join(parts)})" if parts else text


def cpu_has_bf16():
    """True when the CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def session_config(bf16=False, inline=False):
    """ConfigProto for our sessions.  bf16: oneDNN rewrites matmuls to bfloat16 (variables,
    and so checkpoints, stay float32).  inline: run each step's ops in the calling thread
    (inter_op_parallelism_threads -1: sampling's one-character steps are a few dozen tiny
    ops, which a thread pool costs more than)."""
    import tensorflow as tf
    config = tf.compat.v1.ConfigProto()
    if inline:
        config.inter_op_parallelism_threads = -1
    if bf16:
        from tensorflow.core.protobuf import rewriter_config_pb2
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config

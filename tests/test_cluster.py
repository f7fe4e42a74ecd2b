"""Training on a cluster (cluster.py, train.py with TF_CONFIG or --cluster): the
description's checks, each worker's stretch of the batches, and real clusters of local
processes on 127.0.0.1 (a parameter server and two workers) that train, fail and resume."""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import ROOT, TINY, assert_one_line_error, made_up_text, run

from cluster import (Cluster, check_port_free, parse_cluster, read_cluster,
                     settings_problem, stretch, take_stretch, wait_for)
from utils import UserError


def tf_config(ps, workers, kind, index, chief=None):
    spec = {"ps": ps, "worker": workers}
    if chief:
        spec["chief"] = chief
    return json.dumps({"cluster": spec, "task": {"type": kind, "index": index}})


# ----------------------------------------------------------------- the description


def test_tf_config_names_the_tasks_and_worker_0_is_the_chief():
    c = parse_cluster(tf_config(["h:1"], ["h:2", "h:3"], "worker", 1), "TF_CONFIG")
    assert (c.ps, c.workers, c.task_type, c.index) == (("h:1",), ("h:2", "h:3"), "worker", 1)
    assert not c.is_chief and not c.is_ps and c.address == "h:3"
    chief = parse_cluster(tf_config(["h:1"], ["h:2", "h:3"], "worker", 0), "TF_CONFIG")
    assert chief.is_chief and chief.name == "worker 0 (the chief)"
    ps = parse_cluster(tf_config(["h:1"], ["h:2"], "ps", 0), "TF_CONFIG")
    assert ps.is_ps and ps.address == "h:1"
    assert ps.spec() == {"ps": ["h:1"], "worker": ["h:2"]}


def test_a_chief_job_counts_as_worker_0():
    text = tf_config(["h:1"], ["h:3"], "chief", 0, chief=["h:2"])
    c = parse_cluster(text, "TF_CONFIG")
    assert c.workers == ("h:2", "h:3") and c.is_chief
    w = parse_cluster(tf_config(["h:1"], ["h:3"], "worker", 0, chief=["h:2"]), "TF_CONFIG")
    assert w.index == 1 and w.address == "h:3"


def test_no_cluster_is_one_process():
    assert parse_cluster('{"cluster": {}, "task": {}}', "TF_CONFIG") is None
    assert parse_cluster('{}', "TF_CONFIG") is None
    assert read_cluster(None, {}) is None
    assert read_cluster(None, {"TF_CONFIG": "  "}) is None


@pytest.mark.parametrize("text, needle", [
    ("{not json", "is not JSON"),
    ('["a"]', "must be a JSON object"),
    ('{"cluster": {"worker": ["h:2"]}, "task": {"type": "worker"}}', 'no "ps" job'),
    ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps"}}', 'no "worker" job'),
    ('{"cluster": {"ps": ["h"], "worker": ["h:2"]}, "task": {"type": "ps"}}',
     "not an address host:port"),
    ('{"cluster": {"ps": ["h:99999"], "worker": ["h:2"]}, "task": {"type": "ps"}}',
     "not an address host:port"),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:1"]}, "task": {"type": "ps"}}',
     "given to two tasks"),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"], "evaluator": ["h:3"]}, '
     '"task": {"type": "ps"}}', "'evaluator' is not one train.py runs"),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}}', '"task" must say'),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", '
     '"index": 1}}', "task index 1 is not in job 'worker', whose tasks are 0 to 0"),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {"type": "boss"}}',
     "task type 'boss' is not a job"),
    ('{"cluster": {"ps": [], "worker": ["h:2"]}, "task": {"type": "worker"}}',
     "needs a non-empty list"),
])
def test_a_wrong_description_is_one_usage_line(text, needle):
    with pytest.raises(UserError) as e:
        parse_cluster(text, "TF_CONFIG")
    assert e.value.code == 2 and needle in str(e.value) and "TF_CONFIG" in str(e.value)


def test_the_cluster_flag_wins_over_tf_config(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(tf_config(["h:1"], ["h:2"], "ps", 0))
    env = {"TF_CONFIG": tf_config(["h:1"], ["h:2"], "worker", 0)}
    c = read_cluster(str(f), env)
    assert c.is_ps and c.source == f"--cluster {f}"
    with pytest.raises(UserError) as e:
        read_cluster(str(tmp_path / "missing.json"), env)
    assert e.value.code == 2 and "cannot read it" in str(e.value)


# ------------------------------------------------------------------ stretches


def test_each_worker_trains_its_own_contiguous_stretch_of_equal_length():
    assert [stretch(10, 3, i) for i in range(3)] == [(0, 3), (3, 6), (6, 9)]
    assert [stretch(8, 2, i) for i in range(2)] == [(0, 4), (4, 8)]
    with pytest.raises(UserError) as e:
        stretch(1, 2, 0)
    assert e.value.code == 2 and "fewer than the 2 workers" in str(e.value)


def test_take_stretch_keeps_exactly_that_workers_batches():
    xs = [np.full((2, 3), i) for i in range(7)]
    data = SimpleNamespace(x_batches=xs, y_batches=[x + 100 for x in xs], num_batches=7)
    assert take_stretch(data, 2, 1) == (3, 6)
    assert data.num_batches == 3
    assert [int(x[0, 0]) for x in data.x_batches] == [3, 4, 5]
    assert [int(y[0, 0]) for y in data.y_batches] == [103, 104, 105]


def test_a_worker_with_other_settings_or_text_is_told_which():
    chief = {"rnn_size": 256, "batch_size": 32, "text_sha256": "a" * 64}
    assert settings_problem(dict(chief), chief, "worker 1") is None
    p = settings_problem(dict(chief, rnn_size=128), chief, "worker 1")
    assert "worker 1 has rnn_size 128 where the chief has 256" in p
    p = settings_problem(dict(chief, text_sha256="b" * 64), chief, "worker 1")
    assert "another text than the chief" in p


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_a_port_in_use_is_one_line():
    holder = socket.socket()
    holder.bind(("", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        c = Cluster(("127.0.0.1:1",), (f"127.0.0.1:{port}",), "worker", 0, "TF_CONFIG")
        with pytest.raises(UserError) as e:
            check_port_free(c)
        assert f"port {port}" in str(e.value) and "in use" in str(e.value)
    finally:
        holder.close()


def test_waiting_for_a_cluster_is_bounded_and_names_who_is_missing():
    (port,) = free_ports(1)
    c = Cluster((f"127.0.0.1:{port}",), ("127.0.0.1:1",), "worker", 0, "TF_CONFIG")
    now = [0.0]

    def sleep(s):
        now[0] += s
    with pytest.raises(UserError) as e:
        wait_for([("ps 0", f"127.0.0.1:{port}")], 3, "it", c, sleep=sleep,
                 clock=lambda: now[0])
    assert "did not form within 3 s" in str(e.value) and f"ps 0 at 127.0.0.1:{port}" \
        in str(e.value)
    assert 3 <= now[0] <= 4
    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen(1)
    try:
        wait_for([("ps 0", f"127.0.0.1:{port}")], 3, "it", c, sleep=sleep,
                 clock=lambda: now[0])
    finally:
        server.close()


# --------------------------------------------------------------- real clusters


class LocalCluster:
    """A parameter server and `workers` workers, each `python train.py` with its own
    TF_CONFIG, on free ports of 127.0.0.1; output in files; every process killed at
    the end."""

    def __init__(self, tmp, args, workers=2, env_for=None):
        self.tmp, self.args, self.procs = str(tmp), [str(a) for a in args], {}
        ports = free_ports(workers + 1)
        self.ps = [f"127.0.0.1:{ports[0]}"]
        self.workers = [f"127.0.0.1:{p}" for p in ports[1:]]
        self.env_for = env_for or (lambda name: {})

    def start(self, kind, index, extra=()):
        name = f"{kind}{index}"
        env = dict(os.environ, TF_CONFIG=tf_config(self.ps, self.workers, kind, index),
                   **self.env_for(name))
        out = open(os.path.join(self.tmp, name + ".out"), "w")
        err = open(os.path.join(self.tmp, name + ".err"), "w")
        self.procs[name] = (subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "train.py"), *self.args, *map(str, extra)],
            cwd=self.tmp, env=env, stdout=out, stderr=err), out, err)
        return self.procs[name][0]

    def start_all(self, extra=()):
        self.start("ps", 0, extra)
        for i in range(len(self.workers)):
            self.start("worker", i, extra)
        return self

    def wait(self, name, timeout=240):
        proc, out, err = self.procs[name]
        rc = proc.wait(timeout=timeout)
        out.flush()
        err.flush()
        return SimpleNamespace(returncode=rc, stdout=self.read(name, "out"),
                               stderr=self.read(name, "err"))

    def read(self, name, what):
        with open(os.path.join(self.tmp, f"{name}.{what}"), encoding="utf-8") as f:
            return f.read()

    def kill(self, name):
        self.procs[name][0].send_signal(signal.SIGKILL)
        self.procs[name][0].wait()

    def close(self):
        for proc, out, err in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            err.close()
        self.procs = {}


@pytest.fixture
def cluster_text(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "lyrics.txt").write_text(made_up_text(1600, seed=5), encoding="utf-8")
    return d


def cluster_args(tmp_path, data, save, batch, *extra):
    flags = list(TINY)
    flags[flags.index("--batch_size") + 1] = str(batch)
    return ["--data_dir", data, "--save_dir", save, "--log_dir", tmp_path / "log",
            *flags, "--cluster_wait", "60", *extra]


def long_run_args(tmp_path, data, save):
    """A run that goes on until stopped, saving every 20 steps, waiting 10 s for a step."""
    args = cluster_args(tmp_path, data, save, 8, "--max_steps", 100000, "--save_every", 20)
    args[args.index("--cluster_wait") + 1] = "10"
    return args


def wait_for_checkpoint(c, save, seconds=120):
    deadline = time.time() + seconds
    while not glob.glob(str(save / "model.ckpt-*.index")) and time.time() < deadline:
        time.sleep(0.2)
    assert glob.glob(str(save / "model.ckpt-*.index")), c.read("worker0", "err")


@pytest.mark.slow
def test_two_workers_train_like_one_process_at_twice_the_batch(tmp_path, cluster_text):
    """scripts/cluster.sh's parameter server and two workers at batch 8 against one
    process at batch 16, the same number of steps (so the same characters): the loss falls, the validation
    losses agree within 2 %, the chief's directory samples, the others write nothing."""
    steps = 160
    save = tmp_path / "save"
    # scripts/cluster.sh: a parameter server and two workers on 127.0.0.1 from PORT
    env = dict(os.environ, NO_SETUP="1", PYTHON=sys.executable, PORT=str(free_ports(1)[0]))
    chief = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "cluster.sh"),
         *map(str, cluster_args(tmp_path, cluster_text, save, 8, "--max_steps", steps,
                                "--num_epochs", 50))],
        env=env, capture_output=True, text=True, timeout=300)
    assert chief.returncode == 0, (chief.stdout, chief.stderr)
    lines = chief.stdout.splitlines()
    other = "\n".join(x for x in lines if x.startswith("[worker 1] "))
    ps = "\n".join(x for x in lines if x.startswith("[ps 0] "))
    chief.stdout = "\n".join(x for x in lines if not x.startswith("["))
    assert "every worker has ended" in ps, chief.stdout
    assert f"stopped: --max_steps {steps}" in chief.stdout
    assert f"worker 1: ended at step {steps}" in other, other
    train_losses = [float(x) for x in re.findall(r"train loss ([0-9.]+)", chief.stdout)]
    assert train_losses[-1] < train_losses[0] * 0.8, chief.stdout

    # the chief's directory is an ordinary model directory; the other tasks wrote nothing
    names = set(os.listdir(save))
    assert {"config.pkl", "words_vocab.pkl"} <= names
    assert any(n.startswith("model.ckpt-") for n in names), names
    assert len(glob.glob(str(tmp_path / "log" / "*.txt"))) == 1
    proc = run("sample.py", "--save_dir", save, "--n", 30, "--seed", 1, check=0)
    assert len(proc.stdout.strip()) >= 20

    one = run("train.py", *cluster_args(tmp_path, cluster_text, tmp_path / "one", 16,
                                        "--max_steps", steps, "--num_epochs", 50), check=0)
    assert "stopped: --max_steps" in one.stdout
    # both scored on the same held-out text, the same way
    proc = run("analysis/evaluate.py", "--save_dir", save, tmp_path / "one", "--samples", 0,
               "--latest", "--offsets", 0, check=0)
    scores = json.loads(proc.stdout.strip().splitlines()[-1])["models"]
    cluster_loss, one_loss = (m["cross_entropy"] for m in scores)
    assert abs(cluster_loss - one_loss) / one_loss < 0.02, (cluster_loss, one_loss)


def kill_after_a_checkpoint(tmp_path, data, victim, survivor):
    """A long cluster run; once the chief has saved, `victim` is killed; returns the run's
    flags and what `survivor` and the parameter server then did."""
    save = tmp_path / "save"
    args = long_run_args(tmp_path, data, save)
    c = LocalCluster(tmp_path, args)
    try:
        c.start_all()
        wait_for_checkpoint(c, save)
        c.kill(victim)
        left = c.wait(survivor, timeout=120)
        ps = c.wait("ps0", timeout=60)
    finally:
        c.close()
    assert ps.returncode == 1 and "did not say they ended" in ps.stdout, ps.stdout
    return args, left


def resume_with_keep(tmp_path, args):
    """Every task restarted with --keep for 10 more steps: the chief goes on from its last
    checkpoint and the other worker joins at that step."""
    save = tmp_path / "save"
    last = max(int(re.search(r"model\.ckpt-(\d+)", p).group(1))
               for p in glob.glob(str(save / "model.ckpt-*.index")))
    args = list(args)
    args[args.index("--max_steps") + 1] = str(last + 10)
    c = LocalCluster(tmp_path, args)
    try:
        c.start_all(["--keep"])
        chief = c.wait("worker0")
        other = c.wait("worker1")
    finally:
        c.close()
    assert chief.returncode == 0, chief.stderr
    assert f"at step {last}," in chief.stdout, chief.stdout
    assert f"joined at step {last}," in other.stdout, other.stdout
    assert os.path.exists(save / f"model.ckpt-{last + 10}.index")


@pytest.mark.slow
def test_a_killed_worker_ends_the_chief_with_one_line_and_keep_resumes(tmp_path,
                                                                      cluster_text):
    args, chief = kill_after_a_checkpoint(tmp_path, cluster_text, "worker1", "worker0")
    assert_one_line_error(chief, 1, "worker 0 (the chief): no step completed for 10 s",
                          "another worker has stopped", "--keep")
    assert len(chief.stderr.strip().splitlines()) == 1, chief.stderr
    resume_with_keep(tmp_path, args)


@pytest.mark.slow
def test_a_killed_chief_ends_the_worker_with_one_line_and_keep_resumes(tmp_path,
                                                                      cluster_text):
    args, other = kill_after_a_checkpoint(tmp_path, cluster_text, "worker0", "worker1")
    assert_one_line_error(other, 1, "worker 1: no step completed for 10 s",
                          "the chief or another worker has stopped",
                          "this worker writes nothing")
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr
    resume_with_keep(tmp_path, args)


@pytest.mark.slow
def test_a_worker_with_another_text_is_refused_with_one_line(tmp_path, cluster_text):
    other_data = tmp_path / "other"
    other_data.mkdir()
    (other_data / "lyrics.txt").write_text(made_up_text(1600, seed=6), encoding="utf-8")
    save = tmp_path / "save"
    args = cluster_args(tmp_path, cluster_text, save, 8, "--max_steps", 100000)
    args[args.index("--cluster_wait") + 1] = "10"
    c = LocalCluster(tmp_path, args)
    try:
        c.start("ps", 0)
        c.start("worker", 0)
        c.start("worker", 1, ["--data_dir", other_data])
        other = c.wait("worker1", timeout=120)
        chief = c.wait("worker0", timeout=120)
    finally:
        c.close()
    assert_one_line_error(other, 2, "worker 1 reads another text than the chief")
    assert_one_line_error(chief, 1, "no step completed for 10 s")


@pytest.mark.slow
def test_a_cluster_that_never_forms_is_one_line_after_the_wait(tmp_path, corpus_dir):
    ps, w = free_ports(2)
    env = {"TF_CONFIG": tf_config([f"127.0.0.1:{ps}"], [f"127.0.0.1:{w}"], "worker", 0)}
    t0 = time.time()
    proc = run("train.py", "--data_dir", corpus_dir, "--save_dir", tmp_path / "save",
               "--log_dir", tmp_path / "log", *TINY, "--cluster_wait", "2", env=env)
    assert_one_line_error(proc, 1, "the cluster did not form within 2 s",
                          f"ps 0 at 127.0.0.1:{ps} does not answer")
    assert time.time() - t0 < 60


def test_a_cluster_refuses_fine_tuning_and_a_bad_tf_config(tmp_path, corpus_dir):
    ps, w = free_ports(2)
    env = {"TF_CONFIG": tf_config([f"127.0.0.1:{ps}"], [f"127.0.0.1:{w}"], "worker", 0)}
    proc = run("train.py", "--data_dir", corpus_dir, "--save_dir", tmp_path / "save",
               "--init_from", tmp_path / "base", env=env)
    assert_one_line_error(proc, 2, "fine-tune (--init_from, --mix_base) in one process")
    proc = run("train.py", "--data_dir", corpus_dir, env={"TF_CONFIG": "{oops"})
    assert_one_line_error(proc, 2, "TF_CONFIG is not JSON")


@pytest.mark.slow
def test_a_chief_that_stops_early_releases_the_other_workers(tmp_path, cluster_text):
    """The chief stopping for its own reasons (here Ctrl-C; --patience and --max_minutes
    alike) saves, and the worker waiting for the next step ends cleanly: the stop flag
    and the tokens that release it."""
    save = tmp_path / "save"
    c = LocalCluster(tmp_path, cluster_args(tmp_path, cluster_text, save, 8,
                                            "--max_steps", 100000, "--save_every", 20))
    try:
        c.start_all()
        wait_for_checkpoint(c, save)
        c.procs["worker0"][0].send_signal(signal.SIGINT)
        chief = c.wait("worker0", timeout=60)
        other = c.wait("worker1", timeout=60)
        ps = c.wait("ps0", timeout=60)
    finally:
        c.close()
    assert chief.returncode == 128 + signal.SIGINT, chief.stderr
    assert "SIGINT: saved" in chief.stdout and "resume with --keep" in chief.stdout
    step = int(re.search(r"model\.ckpt-(\d+); resume", chief.stdout).group(1))
    assert other.returncode == 0, other.stderr
    assert "worker 1: the chief ended the run at step" in other.stdout, other.stdout
    assert ps.returncode == 0 and "every worker has ended" in ps.stdout
    assert os.path.exists(save / f"model.ckpt-{step}.index")

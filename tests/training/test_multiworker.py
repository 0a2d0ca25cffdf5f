"""`edge-deeplab train --strategy multiworker`, proven with two real worker processes on 127.0.0.1.

Both workers get a TF_CONFIG naming two loopback ports (nothing leaves the machine); the run uses
the tiny model for a few steps, so the test is bounded (each process has a hard timeout).

Loss evidence: with two workers, each replica sees half of the global batch of 4 and BatchNorm
normalizes with that half's statistics, so step 1's loss is the mean of the two halves' losses of
the same initial model on the same global batch; a single process computes the pooled loss of the
four images. Both are reconstructed here from the same data pipeline and seed and must match the
logged losses to 1e-4 (measured: agreement to 1e-7). After step 1 the two runs' weights differ by
those BatchNorm statistics only; their logged losses stay within 10% of each other (measured:
at most 5.6% over 4 steps).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.training_evidence import first_step_losses

pytestmark = pytest.mark.slow

ARGS = ["--dataset", "synthetic", "--batch-size", "4", "--checkpoint-every", "2", "--preset", "fast",
        "--log-every", "1", "--aspp-filters", "16", "--decoder-filters", "16",
        "--low-level-filters", "8", "--seed", "0"]
LOSS_RTOL_STEP1 = 1e-4   # exact up to float32 reduction order
LOSS_RTOL_LATER = 0.10   # per-replica BatchNorm statistics make the weights drift apart slightly


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from edge_deeplab.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), num_train=16, num_val=6, size=64)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _cmd(data, run, steps, *extra):
    return [sys.executable, "-m", "edge_deeplab.app.cli", "train", "--data-dir", str(data),
            "--out", str(run), "--steps", str(steps), *ARGS, *extra]


def _start_workers(data, run, steps, logs: Path, *extra, strace=None):
    """The two workers; with ``strace`` (its path), each runs under it, tracing the system calls
    that create or change files into ``logs/trace_worker<i>.<pid>`` (one file per thread)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for i in range(2):
        env = dict(os.environ, EDGE_DEEPLAB_DEBUG="1",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        out = open(logs / f"worker{i}.log", "w")
        trace = [strace, "-f", "-ff", "-qq", "-s", "4096", "-e", f"trace={','.join(WRITE_CALLS)}",
                 "-o", str(logs / f"trace_worker{i}")] if strace else []
        procs.append(subprocess.Popen([*trace, *_cmd(data, run, steps, "--strategy", "multiworker", *extra)],
                                      env=env, stdout=out, stderr=subprocess.STDOUT, cwd=logs))
    return procs


#: System calls that create, replace or remove a file or folder.
WRITE_CALLS = ("open", "openat", "creat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
               "unlink", "unlinkat", "truncate", "link", "linkat", "symlink", "symlinkat")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+)")


def written_paths(logs: Path, worker: int) -> set:
    """Every path worker ``worker`` created, wrote, renamed onto or removed (successful calls in its
    strace files; relative paths are taken from its working folder, ``logs``)."""
    out = set()
    for f in logs.glob(f"trace_worker{worker}.*"):
        for line in f.read_text(errors="replace").splitlines():
            m = _CALL.match(line)
            if not m or int(m.group(3)) < 0:
                continue
            call, args = m.group(1), m.group(2)
            paths = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
            if not paths or (call in ("open", "openat") and not re.search(r"O_WRONLY|O_RDWR|O_CREAT", args)):
                continue
            target = Path(paths[-1] if call.startswith(("rename", "link", "symlink")) else paths[0])
            out.add(target if target.is_absolute() else logs / target)
    return out


def _wait_all(procs, timeout):
    deadline = time.time() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1, deadline - time.time()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs]


def test_two_workers_train_like_one_process(data, tmp_path, strace):
    run, single = tmp_path / "mw", tmp_path / "single"
    procs = _start_workers(data, run, 4, tmp_path, strace=strace)
    rcs = _wait_all(procs, timeout=900)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert rcs == [0, 0], "\n".join(l[-3000:] for l in logs)
    # Both workers ran all 4 steps as 2 replicas of one job.
    for log in logs:
        summary = json.loads(next(l for l in log.splitlines() if l.startswith("{\"total_steps\"")))
        assert summary["final_step"] == summary["total_steps"] == 4 and summary["start_step"] == 0
    result = json.loads((run / "train_result.json").read_text())
    assert result["num_replicas"] == 2 and result["strategy"] == "multiworker"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-2.index", "ckpt-4.index"]
    # Which process wrote: the chief (worker 0) made every file of the run directory; worker 1
    # created, changed or removed nothing in it, while it did save its share (its scratch folder).
    def inside(paths, folder):
        return {p for p in paths if folder == p or folder in p.parents}

    chief, other = written_paths(tmp_path, 0), written_paths(tmp_path, 1)
    assert inside(other, run) == set(), sorted(inside(other, run))
    assert any("edge_deeplab_worker_" in str(p) and "ckpt" in p.name for p in other), sorted(other)[:20]
    made = {p.relative_to(run).as_posix() for p in inside(chief, run)}
    for name in ("train_result.json", "train_config.json", "model.keras", "last.keras"):
        assert name in made, (name, sorted(made))
    assert any(m.startswith("checkpoints/ckpt-4") for m in made), sorted(made)

    r = subprocess.run(_cmd(data, single, 4), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ref = json.loads((single / "train_result.json").read_text())
    assert ref["num_replicas"] == 1
    mw_losses = dict(map(tuple, result["loss_history"]))
    sp_losses = dict(map(tuple, ref["loss_history"]))
    assert sorted(mw_losses) == sorted(sp_losses) == [1, 2, 3, 4]
    step1 = first_step_losses(single, data)
    pooled, halves = step1[1], step1[2]
    assert sp_losses[1] == pytest.approx(pooled, rel=LOSS_RTOL_STEP1)
    assert mw_losses[1] == pytest.approx(halves, rel=LOSS_RTOL_STEP1)
    assert abs(pooled - halves) > 10 * LOSS_RTOL_STEP1 * pooled  # the check tells the two apart
    for s in (1, 2, 3, 4):
        assert mw_losses[s] == pytest.approx(sp_losses[s], rel=LOSS_RTOL_LATER), (s, mw_losses, sp_losses)


def test_resume_after_a_worker_is_killed(data, tmp_path):
    from edge_deeplab.core._tf import tf

    run = tmp_path / "mw"
    procs = _start_workers(data, run, 12, tmp_path, "--val-split", "none")
    try:
        deadline = time.time() + 600
        while time.time() < deadline and all(p.poll() is None for p in procs):
            if tf.train.latest_checkpoint(str(run / "checkpoints")):
                break
            time.sleep(0.1)
        assert all(p.poll() is None for p in procs), \
            (tmp_path / "worker0.log").read_text()[-3000:]
        procs[1].send_signal(signal.SIGKILL)
        # The chief cannot go on without its peer: it fails (or blocks in a collective) and is
        # stopped here; either way no step beyond the last checkpoint is lost.
        try:
            procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            procs[0].send_signal(signal.SIGKILL)
    finally:
        _wait_all(procs, timeout=30)
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    saved = int(latest.rsplit("-", 1)[1])
    assert 2 <= saved < 12 and not (run / "train_result.json").exists()

    procs = _start_workers(data, run, 12, tmp_path, "--val-split", "none", "--resume")
    rcs = _wait_all(procs, timeout=900)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert rcs == [0, 0], "\n".join(l[-3000:] for l in logs)
    for log in logs:  # both restored the chief's checkpoint, so they stay in step
        assert f"at step {saved}/12" in log, log[-2000:]
    result = json.loads((run / "train_result.json").read_text())
    assert result["start_step"] == saved and result["resumed"] and result["num_replicas"] == 2
    assert result["final_step"] == result["total_steps"] == 12
    assert [s for s, _ in result["loss_history"]][0] == saved + 1

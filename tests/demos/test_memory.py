"""demos.memory: with glibc keeping freed frame buffers, a frame loop stops faulting in fresh pages."""

import subprocess
import sys
import textwrap
from pathlib import Path

from demos.stages import opencv_threads_for

ROOT = Path(__file__).resolve().parents[2]

_LOOP = textwrap.dedent("""
    import resource, numpy as np
    from demos.memory import keep_freed_buffers

    def faults_per_frame(n=10):
        # what a frame costs the matte stage: four 720p float32 planes made and dropped
        bufs = [np.ones((720, 1280), np.float32) for _ in range(4)]
        del bufs
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            bufs = [np.ones((720, 1280), np.float32) for _ in range(4)]
            del bufs
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n

    before = faults_per_frame()
    kept = keep_freed_buffers()
    print(kept, before, faults_per_frame())
""")


def test_freed_frame_buffers_are_reused_not_faulted_in_again():
    out = subprocess.run([sys.executable, "-c", _LOOP], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
    kept, before, after = out.split()
    assert kept == "True"  # glibc (this project's Linux machines)
    pages = 4 * 720 * 1280 * 4 // 4096  # the four planes' pages
    assert float(before) > 0.5 * pages  # glibc's default: fresh, zeroed pages every frame
    assert float(after) < 0.02 * pages  # kept: the same pages again


def test_one_opencv_thread_per_call_when_the_pipeline_fills_the_cores():
    assert opencv_threads_for(4, cores=2) == 1
    assert opencv_threads_for(4, cores=4) == 1
    assert opencv_threads_for(4, cores=16) == 4
    assert opencv_threads_for(0, cores=3) == 3

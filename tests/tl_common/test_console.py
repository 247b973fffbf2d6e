"""A quiet console by default, everything with -v 0 (tl_common.console)."""
import os
import subprocess
import sys
import textwrap

from tests.helpers import ROOT

SCRIPT = textwrap.dedent("""
    from absl import app, logging
    from tl_common import console

    def main(argv):
        console.set_verbosity()
        import tensorflow as tf
        tf.get_logger().info("an INFO record")
        logging.warning("a warning")
        print(float(tf.reduce_sum(tf.ones(3))))

    app.run(main)
""")


def _run(*args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=dict(env, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "3.0"
    return proc.stderr.splitlines()


def test_default_shows_warnings_only_and_v0_shows_everything():
    quiet = _run()
    assert len(quiet) == 1 and quiet[0].endswith("a warning"), quiet
    loud = _run("-v", "0")
    assert any("an INFO record" in line for line in loud)
    assert any("oneDNN" in line or "cuda" in line.lower() for line in loud), loud

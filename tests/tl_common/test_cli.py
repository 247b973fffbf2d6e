"""tl_common.cli: the one way in of every CLI (flagfiles, signals)."""
import os
import signal
import subprocess
import sys
import time

from absl import flags

from tests.helpers import ROOT
from tl_common import cli


def _main():
    fv = flags.FlagValues()
    flags.DEFINE_string("name", "", "a name", flag_values=fv)
    return cli.make_main("prog", fv, "usage", lambda f, args: print(f"name={f.name}")), fv


def test_latin1_byte_in_a_comment_is_ignored_and_in_a_value_is_one_line(tmp_path, capsys):
    main, _ = _main()
    ok = tmp_path / "ok.flags"
    ok.write_bytes(b"# caf\xe9 (Latin-1)\n--name=x\n")
    assert main(["prog", f"--flagfile={ok}"]) == 0
    assert capsys.readouterr().out.strip() == "name=x"
    bad = tmp_path / "bad.flags"
    bad.write_bytes(b"--name=caf\xe9\n")
    assert main(["prog", f"--flagfile={bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prog: error: --flagfile={bad}: line 1 is not UTF-8 text "
                   "(--name=caf\\xe9); save the file as UTF-8"]
    utf8 = tmp_path / "utf8.flags"
    utf8.write_text("--name=café\n", encoding="utf-8")
    assert main(["prog", f"--flagfile={utf8}"]) == 0
    assert capsys.readouterr().out.strip() == "name=café"


_SLEEPER = """
import sys, time
from absl import flags
from tl_common import cli
fv = flags.FlagValues()
def run(f, args):
    print("running", flush=True)
    time.sleep(60)
sys.exit(cli.make_main("sleeper", fv, "usage", run)())
"""


def test_sigterm_is_one_line_and_exit_143(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", _SLEEPER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout.readline().strip() == "running"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == [
        "sleeper: stopped by SIGTERM; temporary files removed, rerun the same command to resume"]


def test_one_line_drops_terminal_colour_codes():
    error = ValueError("Input \x1b[1m0\x1b[0m of layer \x1b[31m'conv'\x1b[0m\n  is incompatible")
    assert cli.one_line(error) == "Input 0 of layer 'conv' is incompatible"

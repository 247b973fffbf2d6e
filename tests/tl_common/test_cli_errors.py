"""tl_common.cli: only errors a user can fix become one line; a bug keeps its traceback."""
import errno
import subprocess
import sys
import textwrap

import pytest
from absl import flags

from tests.helpers import ROOT
from tl_common import cli
from tl_common.records import RecordError


def _main(error):
    def run(f, args):
        raise error
    return cli.make_main("prog", flags.FlagValues(), "usage", run)


def test_a_user_error_is_one_line_and_exit_1(capsys):
    for error in (cli.UserError("--x: bad\nvalue"), RecordError("/r.json: missing key 'a'"),
                  cli.FlagError("--y must be >= 1"), cli.MissingFileError("/d: no shards"),
                  FileNotFoundError(errno.ENOENT, "No such file or directory", "/in.csv"),
                  OSError(errno.ENOSPC, "No space left on device")):
        assert _main(error)(["prog"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("prog: error: ") and err.count("\n") == 1, err
        if getattr(error, "filename", None) == "/in.csv":
            assert err == "prog: error: /in.csv: No such file or directory\n"


@pytest.mark.parametrize("error", [ValueError("a bug"), RuntimeError("a bug"),
                                   KeyError("a bug"), OSError("no file named")])
def test_a_bug_keeps_its_exception(error):
    """In-process the exception propagates (Python prints the traceback, exit 1)."""
    assert not cli.expected_error(error)
    with pytest.raises(type(error)):
        _main(error)(["prog"])


def test_a_bug_in_run_prints_a_traceback_in_a_process():
    code = textwrap.dedent("""
        import sys
        from absl import flags
        from tl_common import cli
        def run(f, args):
            int("not a number")  # a bug in our code: ValueError
        sys.exit(cli.make_main("prog", flags.FlagValues(), "usage", run)(sys.argv))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "invalid literal for int()" in proc.stderr and "prog: error" not in proc.stderr

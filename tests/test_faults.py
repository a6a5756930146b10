"""Environment faults (issue 10): signals, stale temp files, full disk, read-only folder, an output
that is an input, file mode. Each: one line naming the problem, a non-zero exit, no partial file, the
inputs untouched."""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from safetensors import safe_open

from lib_merge.cli import main
from lib_merge.errors import OutputError
from lib_merge.io import atomic
from lib_merge.io.safetensors_io import read_header

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a merge slowed down key by key, so that a signal surely lands in the middle of it
SLOW = """
import sys, time
import lib_merge.merge.pipeline as p
orig = p._Compute.__call__
def slow(self, *a, **k):
    time.sleep(0.05)
    return orig(self, *a, **k)
p._Compute.__call__ = slow
from lib_merge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def partials(d):
    return [n for n in os.listdir(d) if n.endswith(".partial")]


def _start_slow_merge(tmp_path, sd1_models, out):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", SLOW, "merge", *sd1_models[:2], "-o", str(out), "--quiet", "--overwrite"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # wait until the temp file exists: the merge is writing
        if partials(tmp_path) or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert partials(tmp_path), proc.communicate()
    return proc


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_merge_removes_the_temp_file(tmp_path, sd1_models, sig, code):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"old file")
    proc = _start_slow_merge(tmp_path, sd1_models, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert "Traceback" not in err and "nothing was written" in err and len(err.strip().splitlines()) == 1
    assert partials(tmp_path) == [] and out.read_bytes() == b"old file"


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="Windows has no signal masks")
def test_a_signal_while_the_temp_file_is_being_made_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C landing inside mkstemp, after the file exists but before its name is returned (the test
    above hit that window on a loaded machine): the temp file must still be removed."""
    import tempfile
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        made = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Python acts on it here unless it is held
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    out = tmp_path / "m.safetensors"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_write(str(out)) as f:
            f.write(b"data")
    assert partials(tmp_path) == [] and not out.exists()


def test_sigkill_leftover_is_removed_by_the_next_run_and_by_clean(tmp_path, sd1_models, capsys, caplog):
    out = tmp_path / "m.safetensors"
    proc = _start_slow_merge(tmp_path, sd1_models, out)
    proc.kill()
    proc.communicate(timeout=60)
    left = partials(tmp_path)
    assert len(left) == 1 and not out.exists()  # what SIGKILL leaves behind
    live = tmp_path / f".x.safetensors.{os.getpid()}.abcd.partial"  # a running merge's: kept
    live.write_bytes(b"busy")
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", tmp_path / "n.safetensors", "--quiet")
    assert code == 0 and left[0] in caplog.text and "interrupted" in caplog.text
    assert partials(tmp_path) == [live.name]
    # the clean command does the same on its own
    dead = tmp_path / ".y.safetensors.999999999.zz.partial"
    dead.write_bytes(b"x" * 10)
    code, stdout, _ = run(capsys, "clean", tmp_path, "--dry-run")
    assert code == 0 and dead.name in stdout and dead.exists()
    code, stdout, err = run(capsys, "clean", tmp_path)
    assert code == 0 and "removed 1" in stdout and dead.name in caplog.text
    assert partials(tmp_path) == [live.name]


def test_disk_full_while_writing_is_one_line_exit_2(tmp_path, sd1_models, capsys, monkeypatch):
    import lib_merge.io.safetensors_io as sio
    real = sio.SafetensorsWriter.write
    calls = []

    def full(self, key, data):
        calls.append(key)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, key, data)

    monkeypatch.setattr(sio.SafetensorsWriter, "write", full)
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no space left" in err and "m.safetensors" in err and "needs ~" in err and "free" in err
    assert "Fix:" in err and not out.exists() and partials(tmp_path) == []


def test_free_space_is_checked_before_starting(tmp_path, sd1_models, capsys, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet")
    assert code == 2 and "not enough space" in err and "needs ~" in err and "Fix:" in err
    assert not out.exists() and partials(tmp_path) == []


def test_read_only_output_folder_is_one_line(tmp_path, sd1_models, capsys, monkeypatch):
    import tempfile

    def ro(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", ro)
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet")
    assert code == 2 and str(tmp_path) in err and "Read-only" in err and "Fix:" in err and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 folder")
def test_unwritable_folder_is_named_before_work(tmp_path, sd1_models, capsys):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", d / "m.safetensors", "--quiet")
    finally:
        d.chmod(0o755)
    assert code == 2 and "not writable" in err and str(d) in err


def test_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path, sd1_models, capsys):
    import shutil
    a = tmp_path / "A.safetensors"
    shutil.copy(sd1_models[0], a)
    before = a.read_bytes()
    code, _, err = run(capsys, "merge", a, sd1_models[1], "-o", a, "--overwrite", "--quiet")
    assert code == 2 and "also an input" in err and a.read_bytes() == before
    link = tmp_path / "other-name.safetensors"  # same inode under another name
    os.link(a, link)
    code, _, err = run(capsys, "merge", a, sd1_models[1], "-o", link, "--overwrite", "--quiet")
    assert code == 2 and "also an input" in err and a.read_bytes() == before


def test_output_mode_follows_the_umask(tmp_path, sd1_models, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "m.safetensors"
        assert run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet")[0] == 0
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
        os.umask(0o027)
        out2 = tmp_path / "m2.safetensors"
        assert run(capsys, "merge", *sd1_models[:2], "-o", out2, "--quiet")[0] == 0
        assert stat.S_IMODE(os.stat(out2).st_mode) == 0o640
    finally:
        os.umask(old)


def test_quiet_keeps_the_one_line_result(tmp_path, sd1_models, capsys):
    out = tmp_path / "m.safetensors"
    code, stdout, _ = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet")
    assert code == 0 and len(stdout.strip().splitlines()) == 1 and str(out) in stdout


def test_check_output_direct_api(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"1")
    with pytest.raises(OutputError, match="also an input"):
        atomic.check_output(str(p), True, [str(p)])

"""Third-party output goes to the log file, tinyeval's console stays on the terminal, and nothing breaks after."""

from __future__ import annotations

import logging
import subprocess
import sys

from tinyeval import quiet
from tinyeval.console import console


def test_child_process_python_and_logging_output_go_to_the_log(tmp_path, capfd):
    log = tmp_path / "out" / "log.txt"
    logger = logging.getLogger("tinyeval-test-third-party")
    with quiet.into(log):
        handler = logging.StreamHandler(sys.stderr)  # a library configuring its logging inside the block
        logger.addHandler(handler)
        print("python stdout line")
        print("python stderr line", file=sys.stderr)
        logger.warning("library warning line")
        subprocess.run(["sh", "-c", "echo child stdout line; echo child stderr line >&2"], check=True)
        console.print("tinyeval display line")
    logger.warning("after the block")  # the handler made inside must not write to a closed file
    logger.removeHandler(handler)
    seen = capfd.readouterr()
    text = log.read_text()
    for line in ("python stdout line", "python stderr line", "library warning line", "child stdout line",
                 "child stderr line"):
        assert line in text and line not in seen.out + seen.err, line
    assert "tinyeval display line" in seen.out and "tinyeval display line" not in text
    assert "after the block" in seen.err and "Logging error" not in seen.err


def test_verbose_leaves_everything_on_the_terminal(tmp_path, capfd):
    with quiet.into(tmp_path / "log.txt", verbose=True):
        print("shown")
    assert "shown" in capfd.readouterr().out and not (tmp_path / "log.txt").exists()


def test_streams_are_restored_after_an_error(tmp_path, capfd):
    stdout, stderr, file = sys.stdout, sys.stderr, console._file
    try:
        with quiet.into(tmp_path / "log.txt"):
            raise KeyError("boom")
    except KeyError:
        pass
    assert (sys.stdout, sys.stderr, console._file) == (stdout, stderr, file)
    print("back on the terminal")
    assert "back on the terminal" in capfd.readouterr().out


def test_an_empty_log_and_the_folder_made_for_it_are_removed(tmp_path):
    with quiet.into(tmp_path / "run" / "log.txt"):
        pass
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "log.txt").write_text("earlier run\n")
    with quiet.into(tmp_path / "kept" / "log.txt"):
        pass
    assert (tmp_path / "kept" / "log.txt").read_text() == "earlier run\n"

"""The one command: ``irt-fast`` and its alias ``python -m irt_fast`` list and run every
subcommand, refuse unknown arguments, and hand ``train`` arguments on to ``training.fit``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from irt_fast.cli import COMMANDS, build_parser, main


def test_every_registered_command_has_help() -> None:
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name.replace("_", "-") in text


def test_python_dash_m_is_the_same_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "irt_fast", "--help"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("usage: irt-fast")
    assert "add-llm" in out.stdout


def test_unknown_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["models", "path", "x", "--bogus"])
    assert e.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_train_forwards_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    assert "python -m training.fit" in capsys.readouterr().out


def test_bad_path_is_a_clean_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["add-llm", "--model", str(tmp_path), "--answers", "a.csv", "--out", "o"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err

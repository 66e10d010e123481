"""Every `explorer ...` and `trainer ...` line the README shows is accepted by the real argument parsers."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from explorer.cli import _parser as explorer_parser
from trainer.cli import _parser as trainer_parser

README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = [
    line.split("#")[0].strip()
    for line in README.read_text(encoding="utf-8").splitlines()
    if re.match(r"\s*(explorer|trainer) ", line)
]


def test_the_readme_shows_both_command_lines() -> None:
    assert {c.split()[0] for c in COMMANDS} == {"explorer", "trainer"}
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_line_parses(command: str) -> None:
    tool, *args = shlex.split(command)
    parser = explorer_parser() if tool == "explorer" else trainer_parser()
    parsed = parser.parse_args(args)  # exits (SystemExit) on a command line the parser does not accept
    assert parsed.command in args

"""The window's start names the missing system libraries and the exact install line, instead of Qt's abort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from explorer.qt_libraries import XCB_LIBRARIES, window_problem

ROOT = Path(__file__).resolve().parents[2]


def test_the_two_libraries_a_bare_debian_lacked_are_named_with_their_install_line() -> None:
    absent = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}
    problem = window_problem({"DISPLAY": ":0"}, "linux", loads=lambda lib: lib not in absent)
    assert problem == (
        "Qt cannot open a window: the system libraries libxcb-icccm.so.4, libxcb-keysyms.so.1 are missing; "
        "install them with: sudo apt-get install libxcb-icccm4 libxcb-keysyms1"
    )


def test_nothing_is_said_when_every_library_loads_or_another_platform_is_chosen() -> None:
    assert window_problem({"DISPLAY": ":0"}, "linux", loads=lambda lib: True) is None
    assert window_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", loads=lambda lib: False) is None
    assert window_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux", loads=lambda lib: False) is None
    assert window_problem({}, "win32", loads=lambda lib: False) is None
    assert "DISPLAY is not set" in (window_problem({}, "linux", loads=lambda lib: True) or "")


def test_every_library_maps_to_a_debian_package() -> None:
    assert all(name.startswith("lib") and ".so." in name for name in XCB_LIBRARIES)
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"} <= set(XCB_LIBRARIES.values())


@pytest.mark.parametrize("env", [{"PATH": "/usr/bin:/bin"}])
def test_the_app_without_a_display_says_so_and_exits_1_instead_of_aborting(env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "explorer"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().startswith("retrieval-explorer: there is no display to open a window on")

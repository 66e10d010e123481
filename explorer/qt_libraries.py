"""Can Qt open a window here? Asked before Qt is started, because Qt's own answer is an abort (exit 134) that blames
the wrong library: on a bare Debian it named `xcb-cursor0`, which was installed, while `libxcb-icccm4` and
`libxcb-keysyms1` were missing. No Qt and no torch here.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

# What Qt's X11 window plugin (PySide6/Qt/plugins/platforms/libqxcb.so and libQt6XcbQpa) loads from the system, by
# library and the Debian/Ubuntu package that holds it (`ldd` on the plugin, `dpkg -S` on each library).
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1", "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-shape.so.0": "libxcb-shape0", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-util.so.1": "libxcb-util1", "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libX11.so.6": "libx11-6", "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libfontconfig.so.1": "libfontconfig1",
    "libglib-2.0.so.0": "libglib2.0-0",
}  # fmt: skip


def _loads(library: str) -> bool:
    try:
        ctypes.CDLL(library)
        return True
    except OSError:
        return False


def window_problem(
    environ: Mapping[str, str] = os.environ,
    platform: str = sys.platform,
    loads: Callable[[str], bool] = _loads,
) -> str | None:
    """Why Qt could not open a window here, in one sentence that says what to do; None when nothing is known wrong.

    The doctest's line ends in "..." only to fit the page (doctest.ELLIPSIS).

    >>> print(window_problem({"DISPLAY": ":0"}, "linux", loads=lambda lib: lib != "libxcb-icccm.so.4"))
    ... # doctest: +ELLIPSIS
    Qt cannot open a window: the system library libxcb-icccm.so.4 is missing; install it with: sudo apt-get install ...
    >>> window_problem({}, "linux") is not None, window_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    (True, None)
    """
    if not platform.startswith("linux"):
        return None
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen and not chosen.startswith("xcb"):
        return None  # offscreen, wayland, vnc...: Qt's other plugins, not checked here
    if not environ.get("DISPLAY"):
        if environ.get("WAYLAND_DISPLAY") and not chosen:
            return None
        return (
            "there is no display to open a window on (DISPLAY is not set): start it from a desktop session, or use "
            "the command line (explorer --help)"
        )
    missing = [lib for lib in XCB_LIBRARIES if not loads(lib)]
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(XCB_LIBRARIES[lib] for lib in missing))
    if len(missing) == 1:
        what, install = f"the system library {missing[0]} is", "install it"
    else:
        what, install = f"the system libraries {', '.join(missing)} are", "install them"
    install += f" with: sudo apt-get install {packages}"
    return f"Qt cannot open a window: {what} missing; {install}"

"""Walk the fine-tune wizard through a real labelled folder with every default, taking a picture of each page.

What a new user does: File ▸ Fine-tune…, choose the folder, keep every setting, Train, wait, look at the result.
Nothing is clicked that a person would not click; the pictures go to docs/screenshots/ (or --out), and the
measured training time is printed beside the estimate the settings page showed.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/wizard_walkthrough.py FOLDER [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication


def wait(app: QApplication, done: object, timeout_s: float) -> None:
    started = time.monotonic()
    while not done():  # type: ignore[operator]
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s")
        loop = QEventLoop()
        QTimer.singleShot(100, loop.quit)
        loop.exec()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "screenshots")
    p.add_argument("--prefix", default="wizard-real")
    p.add_argument("--protocol", choices=["images", "classes"], default="images")
    args = p.parse_args()
    import os

    os.environ.setdefault("RETRIEVAL_EXPLORER_DATA", tempfile.mkdtemp(prefix="walkthrough-"))
    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    from explorer.ui.wizard import FineTuneWizard

    wizard = FineTuneWizard(None, args.folder)
    wizard.resize(940, 760)
    wizard.show()
    args.out.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        path = args.out / f"{args.prefix}-{name}.png"
        wizard.grab().save(str(path))
        print(f"saved {path}", flush=True)

    wait(app, wizard.folder_page.isComplete, 300)
    wizard.next()
    if args.protocol == "classes":
        wizard.split_page.auto.setChecked(True)
    shot("2-split")
    wizard.next()
    page = wizard.settings_page
    wait(app, lambda: "Estimate" in page.estimate.text(), 300)
    shot("3-settings")
    estimate = re.sub("<[^>]+>", "", page.estimate.text())
    started = time.monotonic()
    wizard.next()
    wait(app, wizard.training_page.isComplete, 3600)
    took = time.monotonic() - started
    shot("4-training")
    wizard.next()
    shot("5-result")
    result = wizard.training_page.result
    print(f"{estimate}\nmeasured: {took / 60:.1f} min; kept epoch {result.kept_epoch if result else '?'}")
    print(re.sub("<[^>]+>", "", wizard.result_page.verdict.text()))
    wizard.result_page.saved = Path("/dev/null")  # nothing to save: close without the question
    wizard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

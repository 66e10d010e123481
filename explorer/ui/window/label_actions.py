"""The window's labelling side: results put into a class of a labelled folder, and the wizard opened on it.

A mixin of `MainWindow`: search finds the pictures of a kind, "Add to a class…" (the grid's context menu, on the
selected results) puts them into the labelled folder (explorer.engine.labelled_set, in a worker: copies of camera
photos take a moment), and File ▸ Fine-tune on the labelled folder opens the wizard on it: search -> label -> train ->
"Use it now" -> search again, in one window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QInputDialog

from explorer.app.jobs import Reply
from explorer.engine.labelled_set import Labelled, add_to_class, classes
from explorer.paths import pictures_folder
from explorer.ui.window.part import WindowPart


class LabelActions(WindowPart):
    # provided by MainWindow
    settings: Any
    executor: Any
    label_copies_action: Any
    thumbnails: Any

    def choose_labelled_folder(self) -> Path | None:
        """Ask where labelled pictures go (a folder of class sub-folders, made if new); remembered."""
        start = str(self.settings.labelled_folder or pictures_folder())
        name = QFileDialog.getExistingDirectory(self._window, "The labelled folder (one sub-folder per class)", start)
        if not name:
            return None
        self.settings.labelled_folder = Path(name)
        return Path(name)

    def label_results(self, pictures: list[Path]) -> None:
        root = self.settings.labelled_folder
        if root is None or not root.is_dir():
            root = self.choose_labelled_folder()
            if root is None:
                return
        known = list(classes(root))
        name, ok = QInputDialog.getItem(
            self._window, "Add to a class", f"Class in {root.name} (a new name makes a new class):", known, 0, True
        )
        if not ok or not name.strip():
            return
        folder = root

        def done(labelled: Labelled) -> None:
            how = "copied" if copy else "copied (links are not allowed there)" if labelled.copied_instead else "linked"
            counts = ", ".join(f"{c} {n}" for c, n in classes(folder).items())
            failed = f"; {len(labelled.failed)} failed: {labelled.failed[0][1]}" if labelled.failed else ""
            self._window.statusBar().showMessage(
                f"{len(labelled.added)} {how} into {labelled.folder.name}{failed}. Classes: {counts}. "
                "File ▸ Fine-tune on the labelled folder trains on them.",
                15000,
            )

        copy = bool(self.settings.label_copies)
        self.executor.submit(
            "files", "label", lambda _task: add_to_class(folder, name, pictures, copy=copy),
            Reply(done=done, failed=lambda message: self._window.statusBar().showMessage(message, 15000)),
        )  # fmt: skip

    def find_duplicates(self) -> None:
        """Index ▸ Find duplicates: copies of one photo in the folder, and bursts (explorer.ui.duplicates_dialog)."""
        from explorer.ui.duplicates_dialog import DuplicatesDialog

        folder, session = self.controller.folder, self.controller.session
        if folder is None or session is None or not session.is_indexed(folder):
            self._window.statusBar().showMessage("Choose a folder and let it be indexed first.", 8000)
            return
        dialog = DuplicatesDialog(session, folder, self.executor, self.thumbnails, self._window)
        dialog.moved.connect(lambda _done: self.controller.files_changed(folder))  # indexed again at once
        self.duplicates_dialog = dialog
        dialog.show()
        dialog.search()

    def toggle_label_copies(self) -> None:
        self.settings.label_copies = not self.settings.label_copies
        self.label_copies_action.setChecked(self.settings.label_copies)

    def fine_tune_labelled(self) -> None:
        root = self.settings.labelled_folder
        if root is None or not root.is_dir():
            root = self.choose_labelled_folder()
            if root is None:
                return
        from explorer.ui.wizard import FineTuneWizard

        wizard = FineTuneWizard(self._window, folder=root)
        wizard.modelReady.connect(self.set_model)  # type: ignore[attr-defined]
        self.fine_tune_wizard = wizard
        wizard.show()
        wizard.raise_()

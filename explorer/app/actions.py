"""The window's actions, declared once: the menus are built from this table and the keyboard-shortcut help is read
from it, so a shortcut can no longer be added to one and forgotten in the other. No Qt here.

Each action names the window method that carries it out (`slot`); `attribute`, when given, is the name under which
the window keeps the QAction (tests and the window itself enable or trigger it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    menu: str
    text: str
    slot: str  # a method of the window, or "<method>:<argument>" for one that takes an argument
    shortcut: str = ""
    help: str = ""  # the line in the shortcut help; "" keeps it out (no shortcut, or listed with its pair)
    tip: str = ""
    attribute: str = ""
    separator_before: bool = False
    submenu_after: str = ""  # a submenu the window fills (recent folders) follows this action
    checkable: bool = False  # shows a check mark (the window keeps it in step with its state)


FILE, INDEX, LIBRARY, VIEW, HELP = "&File", "&Index", "&Library", "&View", "&Help"
RECENT_FOLDERS = "&Recent folders"  # the submenu after "Open folder…", filled by the window

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(FILE, "&Open image…", "choose_query_file", "Ctrl+O", "open a query image", attribute="open_action"),
    ActionSpec(FILE, "&Paste query", "paste_query", "Ctrl+V", "paste an image or a path as the query",
               attribute="paste_action"),
    ActionSpec(FILE, "Open &folder…", "choose_folder", "Ctrl+Shift+O", "choose the folder to search",
               attribute="open_folder_action", submenu_after=RECENT_FOLDERS),
    ActionSpec(FILE, "&Model…", "choose_model", "Ctrl+M", "choose a model", "Use a fine-tuned model",
               separator_before=True),
    ActionSpec(FILE, "Use the &bundled model", "use_bundled_model"),
    ActionSpec(FILE, "&Fine-tune…", "fine_tune", "Ctrl+T", "fine-tune a model on a labelled folder",
               "Train a model on a labelled folder"),
    ActionSpec(FILE, "Fine-tune on the &labelled folder…", "fine_tune_labelled",
               tip="Train on the classes that Add to a class… (the results' context menu) filled"),
    ActionSpec(FILE, "Choose the labelled folder…", "choose_labelled_folder"),
    ActionSpec(FILE, "Copy pictures into classes (not links)", "toggle_label_copies", attribute="label_copies_action",
               checkable=True, tip="Add to a class… copies the pictures instead of linking to them"),
    ActionSpec(FILE, "&Export results…", "choose_export", "Ctrl+E", "export the ranking (CSV / JSON)",
               attribute="export_action", separator_before=True),
    ActionSpec(FILE, "&Copy result paths", "copy_result_paths", "Ctrl+Shift+C", "copy the result paths"),
    ActionSpec(FILE, "&Quit", "close", "Ctrl+Q", "quit", separator_before=True),
    ActionSpec(INDEX, "&Re-index folder", "reindex", "Ctrl+R", "re-index the folder (incremental)",
               attribute="reindex_action"),
    ActionSpec(INDEX, "&Cancel", "cancel", "Esc", "cancel indexing", attribute="cancel_action"),
    ActionSpec(INDEX, "Show &skipped files", "show_skipped", "Ctrl+K", "skipped files"),
    ActionSpec(INDEX, "Find &duplicates…", "find_duplicates", "Ctrl+D", "copies of one photo and bursts in the folder",
               separator_before=True),
    ActionSpec(LIBRARY, "&Show the library", "show_library", "Ctrl+Shift+L", "the library's folders"),
    ActionSpec(LIBRARY, "Search the whole &library", "toggle_library_search", "Ctrl+L",
               "search every folder of the library (again: the current folder only)", attribute="library_action",
               checkable=True),
    ActionSpec(LIBRARY, "&Add this folder to the library", "add_folder_to_library", separator_before=True),
    ActionSpec(LIBRARY, "Add a &folder…", "choose_library_folder"),
    ActionSpec(LIBRARY, "&Index every folder", "index_library"),
    ActionSpec(VIEW, "&Neighbours", "show_tab:0", "Ctrl+1", "neighbours tab"),
    ActionSpec(VIEW, "&Dimensions", "show_tab:1", "Ctrl+2", "dimensions tab"),
    ActionSpec(VIEW, "&Float ranking", "show_ranking:0", "Ctrl+F", "float ranking", separator_before=True),
    ActionSpec(VIEW, "&Binary ranking", "show_ranking:1", "Ctrl+B", "binary (Hamming) ranking"),
    ActionSpec(VIEW, "More neighbours", "step_neighbours:5", "Ctrl+=", "five more neighbours"),
    ActionSpec(VIEW, "Fewer neighbours", "step_neighbours:-5", "Ctrl+-", "five fewer neighbours"),
    ActionSpec(HELP, "&Keyboard shortcuts", "show_shortcuts", "F1", "this list"),
    ActionSpec(HELP, "&About", "show_about"),
)  # fmt: skip

OTHER_SHORTCUTS = (("Ctrl+C", "copy the selected result's path (in the grid)"),)
"""Shortcuts that belong to a view rather than to a menu action."""


def shortcut_rows(actions: tuple[ActionSpec, ...] = ACTIONS) -> list[tuple[str, str]]:
    """(keys, what they do) for the shortcut help, in menu order.

    >>> shortcut_rows((ActionSpec("&File", "&Quit", "close", "Ctrl+Q", "quit"), ActionSpec("&Help", "&About", "a")))
    [('Ctrl+Q', 'quit'), ('Ctrl+C', "copy the selected result's path (in the grid)")]
    """
    return [(a.shortcut, a.help) for a in actions if a.shortcut and a.help] + list(OTHER_SHORTCUTS)

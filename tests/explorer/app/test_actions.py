"""The window's actions are declared once: menus and shortcut help come from one table (issue 12)."""

from __future__ import annotations

from explorer.app.actions import ACTIONS, OTHER_SHORTCUTS, shortcut_rows


def test_no_two_actions_share_a_shortcut_and_every_shortcut_is_explained() -> None:
    keys = [a.shortcut for a in ACTIONS if a.shortcut] + [k for k, _ in OTHER_SHORTCUTS]
    assert len(keys) == len(set(keys))
    listed = {k for k, _ in shortcut_rows()}
    assert listed == set(keys)


def test_the_help_follows_the_menus_order() -> None:
    rows = shortcut_rows()
    assert rows[0] == ("Ctrl+O", "open a query image")
    assert [k for k, _ in rows[:-1]] == [a.shortcut for a in ACTIONS if a.shortcut]

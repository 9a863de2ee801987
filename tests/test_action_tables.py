"""The action table across its modules: tui/actions.py (chat, message, app), tui/dialog_actions.py
(the scene and lorebook dialogs), tui/keymap.py (rebinding by id). Textual's keymap is by id
across every screen, so an id used twice would rebind two actions at once."""

from __future__ import annotations

import pytest

from engines.base import CosplayError
from tui import actions, dialog_actions, keymap
from tui.group_screen import SceneScreen
from tui.lorebook_screen import LorebookScreen


def test_every_id_is_unique_across_all_the_tables():
    ids = [a.id for a in actions.ALL]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    tables = (actions.CHAT, actions.MESSAGE, dialog_actions.SCENE, dialog_actions.LOREBOOK)
    assert sum(len(t) for t in (*tables, actions.APP)) == len(actions.ALL)


@pytest.mark.parametrize(
    ("table", "screen"),
    [(dialog_actions.SCENE, SceneScreen), (dialog_actions.LOREBOOK, LorebookScreen)],
)
def test_a_dialog_binds_its_rows_and_has_their_methods(table, screen):
    for action in table:
        assert hasattr(screen, "action_" + action.action), action
    bound = {b.id for b in screen.BINDINGS if b.id}
    assert bound == {a.id for a in table}


def test_the_readme_table_lists_the_dialog_keys_between_the_message_and_app_keys():
    lines = actions.markdown_table().splitlines()
    order = [a.help for a in actions.ALL if a.keys]
    helps = [line.removeprefix("| ").removesuffix(" |").split(" | ", 1)[1] for line in lines[2:]]
    assert [h for h in helps if h in order] == order
    scene_row = next(i for i, h in enumerate(helps) if h == dialog_actions.SCENE[0].help)
    assert helps[scene_row - 1] == actions.MESSAGE[-1].help


def test_keymap_rebinds_a_dialog_key_and_names_a_typo(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text('lore_import = "ctrl+i"\nscene_mute = "x"\n', encoding="utf-8")
    assert keymap.read_keymap(path) == {"lore_import": "ctrl+i", "scene_mute": "x"}
    path.write_text('lore_imports = "ctrl+i"\n', encoding="utf-8")
    with pytest.raises(
        CosplayError, match="unknown action 'lore_imports'; use one of .*lore_import"
    ):
        keymap.read_keymap(path)

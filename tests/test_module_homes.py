"""Modules split along their seams keep their public names where importers look for them, and
the light paths stay light: reading the config (which `cosplay --help` does to pick its
language, tui/cli_language.py) imports no tomlkit, which only writing the file needs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MOVED = {
    "sessions.config": {
        "sessions.config_write": ["parse_value", "write_value", "remember_model_settings"],
    },
    "sessions.prompt": {
        "sessions.persona_text": [
            "DEFAULT_ROLEPLAY_PROMPT",
            "GROUP_PROMPT",
            "UserPersona",
            "expand_macros",
            "greetings",
            "parse_examples",
            "post_history_text",
            "system_text",
        ],
        "sessions.speaker_view": ["NAME_AWARE_TEMPLATES", "seen_as_user", "speaker_view"],
        "sessions.branch_window": [
            "StoredBranch",
            "history_window",
            "save_counts",
            "tokenizer_key",
        ],
    },
    "sessions.conversation": {
        "sessions.conversation_turns": ["ASSISTANT", "ReplyEvents", "Turn"],
        "sessions.conversation_drafts": ["IMPERSONATION_PROMPT"],
    },
    "tui.chat_screen": {"tui.reply_worker": ["ReplyDone", "ReplyPiece", "ReplyStarted"]},
}


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        (old, new, name)
        for old, homes in MOVED.items()
        for new, names in homes.items()
        for name in names
    ],
)
def test_a_moved_name_is_the_same_object_from_its_old_module(old, new, name):
    old_module, new_module = __import__(old, fromlist=[name]), __import__(new, fromlist=[name])
    assert getattr(old_module, name) is getattr(new_module, name)
    assert name in old_module.__all__


def test_reading_the_config_imports_no_tomlkit(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('# mine\n[ui]\nlanguage = "zh"\n', encoding="utf-8")
    child = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from sessions.config import load_config\n"
        "config = load_config(Path(sys.argv[1]))\n"
        "print(json.dumps([config.get('ui.language'), 'tomlkit' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["zh", False]

"""Sampling presets: the built-in ones, custom ones saved in the store, applied to a session over
its own parameters, carried by a persona, chosen and saved in the parameters panel."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Select

from engines.base import CosplayError, GenerationParams
from engines.fake import FakeEngine
from sessions.cards import card_from_dict
from sessions.presets import (
    BUILT_IN,
    apply_preset,
    find_preset,
    preset_label,
)
from sessions.store import Store
from sessions.workspace import CUSTOM_PRESETS, Workspace
from tests.conftest import wait_until
from tui.app import make_app
from tui.modals import TextPromptScreen
from tui.widgets.params_panel import ParamsPanel


@pytest.fixture
def workspace(tmp_path):
    with Workspace.of(Store(tmp_path / "c.db")) as workspace:
        yield workspace


def test_the_built_in_presets_are_valid_and_say_what_they_do():
    for preset in BUILT_IN:
        GenerationParams(**preset.values)  # nothing unknown or out of range
        assert preset.builtin
    deterministic = find_preset(BUILT_IN, "deterministic").values
    assert deterministic["do_sample"] is False and deterministic["temperature"] == 0.0
    balanced = find_preset(BUILT_IN, "平衡").values
    assert (balanced["temperature"], balanced["top_p"], balanced["min_p"]) == (0.7, 0.9, 0.05)
    assert balanced["repetition_penalty"] == 1.05
    creative = find_preset(BUILT_IN, "Creative").values
    assert (creative["temperature"], creative["top_p"], creative["min_p"]) == (1.0, 0.95, 0.05)
    # The seed's chat server (Cosplay-ChatGLM-LoRA) opened with these.
    seed = find_preset(BUILT_IN, "seed").values
    assert seed["do_sample"] is False and seed["temperature"] == 0.1
    assert (seed["top_p"], seed["top_k"], seed["num_beams"], seed["max_new_tokens"]) == (
        0.75,
        40,
        1,
        128,
    )


def test_a_preset_is_found_by_its_name_or_one_word_of_it():
    assert find_preset(BUILT_IN, "确定 Deterministic").name == "确定 Deterministic"
    assert find_preset(BUILT_IN, "  确定   deterministic ").name == "确定 Deterministic"
    assert find_preset(BUILT_IN, "创意").name == "创意 Creative"
    with pytest.raises(CosplayError, match="no preset named 'wild'.*平衡 Balanced"):
        find_preset(BUILT_IN, "wild")


def test_applying_a_preset_keeps_what_it_does_not_name_and_the_label_follows_edits():
    settings = {"params": {"seed": 7, "stop": ["\n\n"], "temperature": 0.3}, "cast": ["x"]}
    applied = apply_preset(settings, find_preset(BUILT_IN, "balanced"))
    assert applied["params"]["seed"] == 7 and applied["params"]["stop"] == ["\n\n"]
    assert applied["params"]["temperature"] == 0.7 and applied["cast"] == ["x"]
    assert applied["preset"] == "平衡 Balanced"
    assert preset_label(applied, BUILT_IN) == "平衡 Balanced"
    applied["params"]["temperature"] = 0.9
    assert preset_label(applied, BUILT_IN) == "平衡 Balanced*"
    # None chosen: a preset the values equal is named, else nothing.
    greedy = {"params": dict(find_preset(BUILT_IN, "确定").values)}
    assert preset_label(greedy, BUILT_IN) == "确定 Deterministic"
    assert preset_label({"params": {}}, BUILT_IN) == ""
    assert preset_label({"params": {"top_p": "junk"}}, BUILT_IN) == ""  # damaged: defaults


def test_custom_presets_are_saved_in_the_store_and_cannot_take_a_built_in_name(workspace):
    params = GenerationParams(temperature=0.55, top_k=12, seed=3, stop=["。"])
    saved = workspace.save_preset("  夜读  ", params)
    assert saved.name == "夜读"
    assert "seed" not in saved.values and "stop" not in saved.values  # those belong to a chat
    assert saved.values["temperature"] == 0.55 and saved.values["top_k"] == 12
    assert [p.name for p in workspace.presets()][-1] == "夜读"
    assert workspace.preset("夜读").values == saved.values
    for taken in ("平衡", "balanced", "创意 Creative"):
        with pytest.raises(CosplayError, match="built-in"):
            workspace.save_preset(taken, params)
    workspace.store.set_setting(
        CUSTOM_PRESETS, {**workspace.store.get_setting(CUSTOM_PRESETS), "坏": {"top_p": 9}}
    )
    assert "坏" not in [p.name for p in workspace.presets()]  # a damaged one is left out
    workspace.delete_preset("夜读")
    assert "夜读" not in [p.name for p in workspace.presets()]


def test_presets_carry_the_new_samplers_and_switching_turns_them_off(workspace):
    roleplay = find_preset(BUILT_IN, "roleplay").values
    params = GenerationParams(**roleplay)
    assert (params.dry_multiplier, params.dry_base, params.dry_allowed_length) == (0.8, 1.75, 2)
    assert (params.xtc_threshold, params.xtc_probability) == (0.1, 0.5)
    assert params.repetition_penalty == 1.0 and params.uses_new_samplers()
    # every built-in names every sampler's switch, so the next one leaves none of them on
    session = workspace.new_session()
    workspace.apply_preset(session.id, "roleplay")
    balanced = workspace.apply_preset(session.id, "balanced")
    assert not GenerationParams(**balanced.settings["params"]).uses_new_samplers()
    assert preset_label(balanced.settings, BUILT_IN) == "平衡 Balanced"
    # a custom preset keeps them, breakers included
    mine = GenerationParams(dry_multiplier=1.2, dry_sequence_breakers=["\n", "「"],
                            top_n_sigma=1.5, mirostat_mode=2, mirostat_tau=3.0)  # fmt: skip
    saved = workspace.save_preset("不重复", mine)
    assert workspace.preset("不重复").values == saved.values
    again = GenerationParams(**saved.values)
    assert again.dry_sequence_breakers == ["\n", "「"] and again.mirostat_tau == 3.0
    assert saved.matches(mine) and not saved.matches(GenerationParams())
    # one saved before these samplers existed still loads, and leaves them as they were
    workspace.store.set_setting(
        CUSTOM_PRESETS, {**workspace.store.get_setting(CUSTOM_PRESETS), "旧": {"top_k": 7}}
    )
    assert workspace.preset("旧").values == {"top_k": 7}


def test_applying_a_preset_to_a_session_is_also_where_new_chats_start(workspace):
    session = workspace.new_session()
    session = workspace.store.update_session(session.id, settings={"params": {"seed": 11}})
    applied = workspace.apply_preset(session.id, "creative")
    assert applied.settings["preset"] == "创意 Creative"
    assert applied.settings["params"]["seed"] == 11
    assert GenerationParams(**applied.settings["params"]).temperature == 1.0
    fresh = workspace.new_session()
    assert preset_label(fresh.settings, workspace.presets()) == "创意 Creative"


def persona_card(name: str, **cosplay) -> dict:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": name,
            "first_mes": "（拱手）{{user}}请了。",
            "extensions": {"cosplay": cosplay, "other_tool": {"kept": True}},
        },
    }


def test_a_persona_carries_a_preset_that_a_session_starts_with(workspace):
    workspace.personas.create(card_from_dict(persona_card("鲁肃", preset="确定")))
    session = workspace.new_session("鲁肃")
    assert session.settings["preset"] == "确定 Deterministic"
    assert GenerationParams(**session.settings["params"]).do_sample is False
    # Its own sampling values go over the preset's: the preset is then shown as changed.
    workspace.personas.create(
        card_from_dict(persona_card("周瑜", preset="平衡", sampling={"temperature": 0.8}))
    )
    session = workspace.new_session("周瑜")
    assert session.settings["params"]["temperature"] == 0.8
    assert preset_label(session.settings, workspace.presets()) == "平衡 Balanced*"
    # A preset this machine does not have is passed over.
    workspace.personas.create(card_from_dict(persona_card("黄盖", preset="苦肉计")))
    assert "preset" not in workspace.new_session("黄盖").settings
    # The card round-trips with the preset and the other tool's extension.
    saved = json.loads(workspace.personas.path_for("鲁肃").read_text(encoding="utf-8"))
    assert saved["data"]["extensions"]["cosplay"]["preset"] == "确定"
    assert saved["data"]["extensions"]["other_tool"] == {"kept": True}


async def test_the_panel_chooses_a_preset_shows_an_edit_and_saves_a_new_one(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["一", "二"])
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(120, 60)) as pilot:
        screen = app.chat
        await pilot.press("ctrl+t")
        await pilot.pause()
        panel = screen.query_one(ParamsPanel)
        select = panel.query_one("#preset", Select)
        names = [str(prompt) for prompt, _ in select._options if _ is not Select.NULL]
        assert names[: len(BUILT_IN)] == [p.name for p in BUILT_IN]
        select.value = "确定 Deterministic"
        await wait_until(pilot, lambda: screen.session.settings.get("preset") == select.value)
        assert panel.query_one("#do_sample").value is False
        assert panel.query_one("#temperature").value == "0.0"
        assert str(panel.query_one("#preset_state").render()) == "Preset"
        # An edit keeps the preset's name, marked changed.
        temperature = panel.query_one("#temperature")
        temperature.value = "0.2"
        temperature.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert screen.session.settings["params"]["temperature"] == 0.2
        assert screen.session.settings["preset"] == "确定 Deterministic"
        assert str(panel.query_one("#preset_state").render()) == "Preset · changed"
        # Save as preset: a name, then it is listed and chosen.
        await pilot.click("#save_preset")
        await pilot.pause()
        assert isinstance(app.screen, TextPromptScreen)
        app.screen.query_one("#answer").value = "[b]冷静[/b]"
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.session.settings.get("preset") == "[b]冷静[/b]")
        assert "[b]冷静[/b]" in [p.name for p in screen.workspace.presets()]
        assert select.value == "[b]冷静[/b]"
        assert str(panel.query_one("#preset_state").render()) == "Preset"
        # The reply is made with the chosen values.
        await pilot.press("ctrl+t")
        await pilot.click("#input")
        await pilot.press("h", "i", "enter")
        await wait_until(pilot, lambda: not screen.generating and len(engine.params) == 1)
        assert engine.params[0].do_sample is False and engine.params[0].temperature == 0.2


def test_ask_takes_a_preset_for_the_reply_and_refuses_an_unknown_one(
    capsys, tiny_gguf, cosplay_home
):
    from tui.cli import main

    assert main(["ask", "-m", "/no/such/model.gguf", "--preset", "wild", "hi"]) == 2
    assert "no preset named 'wild'" in capsys.readouterr().err  # before any model loads
    argv = ["ask", "--model", str(tiny_gguf), "--max-tokens", "4", "--preset", "确定", "hi"]
    assert main(argv) == 0
    with Workspace(cosplay_home) as workspace:
        reply = workspace.store.branch(workspace.last_session())[-1]
        assert reply.meta["params"]["do_sample"] is False
        assert reply.meta["params"]["max_new_tokens"] == 4  # the flag wins over the preset
        assert reply.meta["params"]["top_k"] == 0

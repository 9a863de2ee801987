"""A model switch frees the old model first when both would not fit in memory
(engines/room.py), and loads the old one again if the new one fails (tui/model_loading.py)."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

import tui.model_loading as model_loading
from benchmarks.bench_switch import switch_to
from engines import room
from engines.base import CosplayError
from engines.fake import FakeEngine
from engines.loader import ModelSpec
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tui.app import make_app


class LocalEngine(FakeEngine):
    """A stand-in for a loaded GGUF: the CPU engine's kind, and it records its close."""

    kind = "cpu"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def two_models(tmp_path, tiny_gguf):
    workspace = Workspace(tmp_path / "home")
    workspace.paths.models.mkdir(parents=True, exist_ok=True)
    old, new = workspace.paths.models / "old.gguf", workspace.paths.models / "new.gguf"
    shutil.copy(tiny_gguf, old)
    shutil.copy(tiny_gguf, new)
    return workspace, old, new


def loads_recorded(monkeypatch, old) -> list[bool]:
    """Whether `old` was closed each time a model began to load (the loads go on as usual)."""
    closed_when_loading = []
    real_load = model_loading.load_in_tui

    def load(spec, workspace, progress=None):
        closed_when_loading.append(old.closed)
        return real_load(spec, workspace, progress)

    monkeypatch.setattr(model_loading, "load_in_tui", load)
    return closed_when_loading


async def choose(app, pilot, model):
    """Open the models screen and press Enter on `model`; the screen."""
    await pilot.press(app.keys_of_id("models").lower())
    await wait_until(pilot, lambda: app.screen is not app.chat)
    screen = app.screen
    index = next(i for i, c in enumerate(screen.models) if c.model == str(model))
    screen.query_one("#models").highlighted = index
    await pilot.press("enter")
    return screen


def started(workspace, old_engine, old_path):
    """The app as `cosplay chat --model OLD` starts it: the engine and the spec it came from."""
    app = make_app(workspace=workspace, engine=old_engine)
    app.engine_spec = ModelSpec(model=str(old_path))
    return app


def test_only_two_local_models_that_do_not_fit_together_free_first(
    tiny_gguf, tmp_path, monkeypatch
):
    size = tiny_gguf.stat().st_size
    spec = ModelSpec(model=str(tiny_gguf))
    monkeypatch.setattr(room, "available_ram", lambda: size)  # less than size × MARGIN
    assert room.must_free_first(LocalEngine(["x"]), spec)
    assert not room.must_free_first(None, spec)
    assert not room.must_free_first(FakeEngine(["x"]), spec)  # the demo holds no model
    assert not room.must_free_first(LocalEngine(["x"]), ModelSpec(model="http://127.0.0.1:1/v1"))
    monkeypatch.setattr(room, "available_ram", lambda: 10 * size)
    assert not room.must_free_first(LocalEngine(["x"]), spec)
    monkeypatch.setattr(room, "available_ram", lambda: None)  # not known: keep the old
    assert not room.must_free_first(LocalEngine(["x"]), spec)


def test_sizes_come_from_the_files_and_ram_from_the_kernel(tmp_path, tiny_gguf):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model-1.safetensors").write_bytes(b"x" * 300)
    (folder / "model-2.safetensors").write_bytes(b"x" * 200)
    (folder / "config.json").write_text("{}")
    assert room.model_bytes(str(folder)) == 500
    assert room.model_bytes(str(tiny_gguf)) == tiny_gguf.stat().st_size
    assert room.model_bytes("Qwen/Qwen2.5-0.5B-Instruct") == 0
    ram = room.available_ram()
    assert ram is None or ram > 2**20


async def test_a_switch_that_does_not_fit_closes_the_old_model_before_loading(
    two_models, monkeypatch
):
    workspace, old_path, new = two_models
    old = LocalEngine(["旧的回复"])
    monkeypatch.setattr(room, "available_ram", lambda: 1)
    closed_when_loading = loads_recorded(monkeypatch, old)
    app = started(workspace, old, old_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await switch_to(app, pilot, new)
        assert closed_when_loading == [True]
        assert app.engine.model_name == new.name and app.chat.engine is app.engine
    app.engine.close()


async def test_when_the_new_model_fails_the_old_one_is_loaded_again(two_models, monkeypatch):
    workspace, old_path, new = two_models
    old = LocalEngine(["旧的回复"])
    monkeypatch.setattr(room, "available_ram", lambda: 1)
    real_load = model_loading.load_in_tui

    def load(spec, workspace, progress=None):
        if spec.model == str(new):
            raise CosplayError(f"{new.name} is broken")
        return real_load(spec, workspace, progress)

    monkeypatch.setattr(model_loading, "load_in_tui", load)
    app = started(workspace, old, old_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await choose(app, pilot, new)
        await wait_until(pilot, lambda: app.engine is not old and app.engine is not None, 60)
        assert old.closed and app.engine.model_name == old_path.name
        said = [str(n.message) for n in app._notifications]
        assert any("new.gguf is broken" in n and "old.gguf is loaded again" in n for n in said)
    app.engine.close()


async def test_a_switch_that_fits_keeps_the_old_model_until_the_new_one_is_in(
    two_models, monkeypatch
):
    workspace, old_path, new = two_models
    old = LocalEngine(["旧的回复"])
    monkeypatch.setattr(room, "available_ram", lambda: 2**40)
    closed_when_loading = loads_recorded(monkeypatch, old)
    app = started(workspace, old, old_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await switch_to(app, pilot, new)
        assert closed_when_loading == [False] and old.closed
    app.engine.close()


async def test_when_neither_loads_the_chat_has_no_model_and_says_so(two_models, monkeypatch):
    workspace, old_path, new = two_models
    old = LocalEngine(["旧的回复"])
    monkeypatch.setattr(room, "available_ram", lambda: 1)

    def load(spec, workspace, progress=None):
        raise CosplayError(f"{spec.model} is broken")

    monkeypatch.setattr(model_loading, "load_in_tui", load)
    app = started(workspace, old, old_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await choose(app, pilot, new)
        await wait_until(pilot, lambda: not screen.busy, 60)
        assert old.closed and app.engine is None and app.chat.engine is None
        said = " ".join(str(n.message) for n in app._notifications)
        assert "could not be loaded again; pick a model here" in said and str(old_path) in said
        await pilot.press("escape")  # back in the chat, which says no model is loaded
        await pilot.press(*"hi", "enter")
        await pilot.pause(0.2)
        assert app.chat.engine is None


async def test_a_reply_under_way_is_stopped_and_the_old_model_closed_before_the_new_loads(
    two_models, monkeypatch
):
    """The load waits for the close itself, not for signs of it: a slow status update between
    the chat letting go of the engine and the close starting does not let the load run early."""
    from tui.chat_screen import ChatScreen

    workspace, old_path, new = two_models
    old = LocalEngine(["一二三四五六七八九十" * 30], delay=0.02)
    monkeypatch.setattr(room, "available_ram", lambda: 1)
    update_status = ChatScreen.update_status

    def slow_status(self, *args, **kwargs):
        update_status(self, *args, **kwargs)
        if self.engine is None:
            time.sleep(0.3)

    monkeypatch.setattr(ChatScreen, "update_status", slow_status)
    closed_when_loading = loads_recorded(monkeypatch, old)
    app = started(workspace, old, old_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press(*"hi", "enter")
        await wait_until(pilot, lambda: app.chat.generating)
        await switch_to(app, pilot, new)
        assert closed_when_loading == [True] and not app.chat.generating
    app.engine.close()


async def test_quitting_while_the_old_model_is_being_freed_loads_nothing(two_models, monkeypatch):
    workspace, old_path, new = two_models
    old = LocalEngine(["旧的回复"])
    monkeypatch.setattr(room, "available_ram", lambda: 1)
    release = threading.Event()

    class SlowToClose(LocalEngine):
        def close(self) -> None:
            release.wait(5)
            super().close()

    old = SlowToClose(["旧的回复"])
    loads = []
    monkeypatch.setattr(model_loading, "load_in_tui", lambda spec, ws, progress: loads.append(spec))
    app = started(workspace, old, old_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await choose(app, pilot, new)
        await wait_until(pilot, lambda: app.engine is None)
        app.exit()
    release.set()
    time.sleep(0.3)
    assert loads == []


async def test_without_the_spec_of_the_model_in_use_the_old_one_stays(two_models, monkeypatch):
    """A model the app cannot load again (the demo, a spec not known) is never freed first."""
    workspace, _old_path, new = two_models
    old = LocalEngine(["旧的回复"])
    monkeypatch.setattr(room, "available_ram", lambda: 1)
    app = make_app(workspace=workspace, engine=old)
    async with app.run_test(size=(100, 30)) as pilot:
        await switch_to(app, pilot, new)
        assert app.engine.model_name == new.name and app.engine_spec.model == str(new)
    app.engine.close()


def test_split_ggufs_hub_repos_in_the_cache_and_both_weight_formats_count_once(
    tmp_path, monkeypatch
):
    for part in (1, 2, 3):
        (tmp_path / f"big-0000{part}-of-00003.gguf").write_bytes(b"x" * 100)
    (tmp_path / "other-00001-of-00002.gguf").write_bytes(b"x" * 9)
    assert room.model_bytes(str(tmp_path / "big-00001-of-00003.gguf")) == 300
    both = tmp_path / "both"
    both.mkdir()
    (both / "model.safetensors").write_bytes(b"x" * 50)
    (both / "pytorch_model.bin").write_bytes(b"x" * 50)
    assert room.model_bytes(str(both)) == 50
    cache = tmp_path / "hf-cache"
    snapshot = cache / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"x" * 70)
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert room.model_bytes("org/tiny") == 70
    assert room.model_bytes("org/not-downloaded") == 0

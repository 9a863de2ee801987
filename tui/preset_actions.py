"""Sampling presets on the chat screen: the parameters panel's selector and "Save as preset".

A mixin of ChatScreen (through SessionActions). The presets live in sessions/presets.py and the
workspace (custom ones in the store's settings); the panel only shows them and posts what the
user picked.
"""

from __future__ import annotations

from engines.base import CosplayError
from engines.i18n import _
from tui.modals import TextPromptScreen
from tui.widgets.params_panel import ParamsPanel


class PresetActions:
    """Needs from the screen: workspace, store, session, params, update_status."""

    def _show_presets(self) -> None:
        self.query_one(ParamsPanel).show_presets(
            self.workspace.presets(), self.session.settings.get("preset")
        )

    def on_params_panel_loaded(self, event: ParamsPanel.Loaded) -> None:
        event.stop()
        if self.session is not None:
            self._show_presets()

    def on_params_panel_preset_chosen(self, event: ParamsPanel.PresetChosen) -> None:
        """Write the preset's values into the session (its other parameters are kept)."""
        event.stop()
        try:
            self.session = self.workspace.apply_preset(self.session.id, event.name)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        self.query_one(ParamsPanel).load(
            self.params, self.session.settings.get("max_history_rounds")
        )
        self.update_status()

    def on_params_panel_save_as_preset(self, event: ParamsPanel.SaveAsPreset) -> None:
        event.stop()

        def save(name: str | None) -> None:
            if not name:
                return
            try:
                preset = self.workspace.save_preset(name, event.params)
            except CosplayError as exc:
                self.notify(str(exc), severity="error")
                return
            settings = dict(self.session.settings)
            settings["preset"] = preset.name
            self.session = self.store.update_session(self.session.id, settings=settings)
            self._show_presets()
            self.update_status()
            self.notify(_("Saved the preset “{name}”.", name=preset.name))

        self.app.push_screen(TextPromptScreen(_("Save these parameters as the preset:")), save)

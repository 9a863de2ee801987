"""Textual's own words in the UI's language: the key descriptions the footer and the key panel
show, and the command palette's built-in commands.

Bindings are made once, when a class is defined (before the config picks the language), so
their descriptions stay the English message ids and are translated where they are shown: a
screen with `TranslatedBindings` first among its bases hands the footer translated copies.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from textual.app import SystemCommand
from textual.binding import ActiveBinding, Binding

from engines.i18n import N_, _, language

# Textual's own palette commands and key descriptions (textual.app.App), marked for the
# catalogue: the titles and helps it writes, in its words.
TEXTUAL_WORDS = (
    N_("Theme"),
    N_("Change the current theme"),
    N_("Quit"),
    N_("Quit the application as soon as possible"),
    N_("Keys"),
    N_("Hide the keys and widget help panel"),
    N_("Show help for the focused widget and a summary of available keys"),
    N_("Minimize"),
    N_("Minimize the widget and restore to normal size"),
    N_("Maximize"),
    N_("Maximize the focused widget"),
    N_("Screenshot"),
    N_("Save an SVG 'screenshot' of the current screen"),
    N_("palette"),
)


def translated_command(command: SystemCommand) -> SystemCommand:
    """One of Textual's palette commands with its title and help in the UI's language."""
    return command._replace(title=_(command.title), help=_(command.help))


@cache
def _translated_binding(binding: Binding, lang: str) -> Binding:
    tooltip = _(binding.tooltip) if binding.tooltip else binding.tooltip
    return replace(binding, description=_(binding.description), tooltip=tooltip)


class TranslatedBindings:
    """A screen mixin (first among the bases): the footer and the key panel get the
    descriptions of the keys in the UI's language."""

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        lang = language()
        shown = super().active_bindings  # type: ignore[misc]
        if lang == "en":
            return shown
        return {
            key: active._replace(
                binding=_translated_binding(active.binding, lang),
                tooltip=_(active.tooltip) if active.tooltip else active.tooltip,
            )
            for key, active in shown.items()
        }

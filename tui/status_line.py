"""The chat screen's status line (a mixin of ChatScreen): the model, the preset, the scene,
the context used and the speed of the last reply, the window's summary, memory, the adapter,
the template and the engine, most important first (the line is cut at the terminal's width).
"""

from __future__ import annotations

from textual.widgets import Static

from engines.i18n import N_, _

# What the status line says for an engine fact that means little to a person.
PLAIN_WORDS = {"float32": N_("full precision (float32)")}


class StatusLine:
    """Needs from the screen: engine, session, workspace, conversation, _last_reply,
    scene_status, memory_status."""

    def update_status(self, note: str = "") -> None:
        if self.engine is None:
            self.query_one("#status", Static).update(
                _("no model loaded · see `cosplay chat --help`")
            )
            return
        from sessions.presets import preset_label

        facts = self.engine.describe()
        parts = [self.engine.model_name]
        preset = preset_label(self.session.settings, self.workspace.presets())
        if preset:
            parts.append(_("preset {preset}", preset=preset))
        parts += self.scene_status()
        meta = self._last_reply.meta if self._last_reply else {}
        meta = (meta.get("continued") or [meta])[-1]  # a continued reply: its last part's
        if meta:  # what matters most first: the line is cut at the terminal's width
            used = meta.get("prompt_tokens", 0) + meta.get("completion_tokens", 0)
            parts.append(_("ctx {used}/{size}", used=used, size=self.engine.context_length))
            parts.append(_("{rate} tok/s", rate=f"{meta.get('tokens_per_s', 0):.1f}"))
        else:
            parts.append(_("ctx {size}", size=self.engine.context_length))
        plan = self.conversation.last_plan if self.conversation else None
        if plan and plan.summary:
            parts.append(plan.summary)
        parts += self.memory_status()
        adapter = facts.get("adapter")
        parts.append(
            _("adapter {adapter}", adapter=adapter)
            if adapter not in (None, "", "none")
            else _("no adapter")
        )
        parts.append(_("template {template}", template=self.engine.template_name))
        engine = [facts.get(k, "") for k in ("engine", "device", "dtype", "quantization")]
        engine = [_(PLAIN_WORDS[v]) if v in PLAIN_WORDS else v for v in engine if v and v != "none"]
        if facts.get("gpu_layers"):  # the CPU engine's offload (engines/llamacpp.py)
            engine.append(facts["gpu_layers"])
        parts.append(" ".join(dict.fromkeys(engine)))
        if note:  # first: the status line is cut at the terminal's width
            parts.insert(0, note)
        self.query_one("#status", Static).update(" · ".join(parts))

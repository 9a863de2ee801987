"""Chat templates: one registry for chat (both engines) and training.

A model's own Jinja template comes first; the named templates below cover the
seed-era models that ship none. Every template renders in a sandboxed Jinja
environment and carries its stop strings.

Renders are *prefix-stable*: rendering a conversation and then the same
conversation plus one more turn gives a string that starts with the first
(without the generation prompt). The CPU engine relies on that to keep
llama.cpp's KV cache hitting across turns.

A render may be *prefilled*: it then ends inside the assistant's turn, right after the
start of a reply already written (no end-of-turn, no new generation prompt), so the model
continues that reply. Any Jinja template does this: the reply is rendered as a final
assistant message ending with a marker, and the text is cut at the marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jinja2 import TemplateError as JinjaTemplateError

from engines.errors import TemplateError
from engines.i18n import _
from engines.template_sandbox import TemplateLimitError, compile_template, render_bounded

if TYPE_CHECKING:
    from engines.base import ChatMessage

# Speaker prefixes that mean the model started writing the next line of dialogue.
CJK_SPEAKER_STOPS = ["曰：", "道：", "说："]
# Ends a prefilled reply in a render, to cut the text there: letters only, so no template's
# escaping or trimming changes it.
PREFILL_MARK = "CosplayPrefillMark7f3a9c"


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template: its Jinja source and the stop strings it ends a reply with."""

    name: str
    source: str  # Jinja source
    stop: list[str] = field(default_factory=list)
    description: str = ""

    def render(
        self,
        messages: list[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        bos_token: str = "",
        eos_token: str = "",
        char_name: str = "",
        user_name: str = "",
        prefill: str = "",
    ) -> str:
        """The prompt for `messages`; with `prefill`, one that ends inside the assistant's turn
        right after it (a template that does not render the reply as a final message gets the
        generation prompt followed by it)."""
        if prefill:
            names = dict(
                bos_token=bos_token, eos_token=eos_token, char_name=char_name, user_name=user_name
            )
            reply: ChatMessage = {"role": "assistant", "content": prefill + PREFILL_MARK}
            try:
                text = self.render([*messages, reply], add_generation_prompt=False, **names)
            except TemplateError:  # a template that refuses a final assistant message
                text = ""
            if PREFILL_MARK in text:
                return text[: text.rindex(PREFILL_MARK)]
            return self.render(messages, **names) + prefill
        _compile(self.source)
        try:
            text = render_bounded(
                self.source,
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=bos_token,
                eos_token=eos_token,
                char_name=char_name or _last_name(messages, "assistant") or "Assistant",
                user_name=user_name or _last_name(messages, "user") or "User",
                tools=None,
            )
        except TemplateLimitError as exc:
            raise TemplateError(
                _(
                    "{title} failed to render ({problem}); choose a named one, e.g. --template chatml.",
                    title=self._title,
                    problem=exc,
                )
            ) from exc
        if not text.strip():
            raise TemplateError(
                _(
                    "{title} rendered an empty prompt; choose a named one, e.g. --template chatml.",
                    title=self._title,
                )
            )
        return text

    @property
    def _title(self) -> str:
        return (
            _("The model's own chat template")
            if self.name == "model"
            else _("The template {name!r}", name=self.name)
        )


def _last_name(messages: list[ChatMessage], role: str) -> str:
    for message in reversed(messages):
        if message.get("role") == role and message.get("name"):
            return message["name"]
    return ""


def _compile(source: str):
    try:
        return compile_template(source)
    except JinjaTemplateError as exc:
        raise TemplateError(
            _(
                "The chat template does not parse ({problem}); choose a named one, e.g. --template chatml.",
                problem=exc,
            )
        ) from exc


_CHATML = """\
{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

_LLAMA2 = """\
{% set ns = namespace(system='') %}\
{% for m in messages %}\
{% if m.role == 'system' %}{% set ns.system = ns.system + m.content %}\
{% elif m.role == 'user' %}{{ bos_token }}[INST] \
{% if ns.system %}<<SYS>>
{{ ns.system }}
<</SYS>>

{% set ns.system = '' %}{% endif %}{{ m.content }} [/INST]\
{% else %} {{ m.content }} </s>{% endif %}\
{% endfor %}"""

_ALPACA = """\
{% set ns = namespace(system='Below is an instruction that describes a task. \
Write a response that appropriately completes the request.') %}\
{% for m in messages if m.role == 'system' %}\
{% if loop.first %}{% set ns.system = '' %}{% endif %}\
{% set ns.system = ns.system + m.content %}{% endfor %}\
{{ ns.system }}

{% for m in messages if m.role != 'system' %}\
{% if m.role == 'user' %}### Instruction:
{{ m.content }}

### Response:
{% else %}{{ m.content }}

{% endif %}{% endfor %}"""

_VICUNA = """\
{% set ns = namespace(system='The following is a conversation between an AI assistant called \
Assistant and a human user called User. The assistant is intelligent, knowledgeable and polite \
to answer questions of user.') %}\
{% for m in messages if m.role == 'system' %}\
{% if loop.first %}{% set ns.system = '' %}{% endif %}\
{% set ns.system = ns.system + m.content %}{% endfor %}\
{{ ns.system }}

{% for m in messages if m.role != 'system' %}\
{% if m.role == 'user' %}User:{{ m.content }}

{% else %}Assistant:{{ m.content }}

{% endif %}{% endfor %}\
{% if add_generation_prompt %}Assistant:{% endif %}"""

_CHATGLM = """\
{% set ns = namespace(round=0) %}\
{% for m in messages %}\
{% if m.role == 'system' %}{{ m.content }}
{% elif m.role == 'user' %}[Round {{ ns.round }}]
问：{{ m.content }}
答：{% set ns.round = ns.round + 1 %}\
{% else %}{{ m.content }}
{% endif %}{% endfor %}"""

_BAICHUAN = """\
{% for m in messages %}\
{% if m.role == 'system' %}{{ m.content }}\
{% elif m.role == 'user' %}<reserved_106>{{ m.content }}<reserved_107>\
{% else %}{{ m.content }}</s>{% endif %}{% endfor %}"""

# The classics dialogue format: narration, then `某某曰：“……”` lines. The reply is
# the quoted speech that follows the speaker prefix.
_COSPLAY = """\
{% for m in messages %}\
{% if m.role == 'system' %}{{ m.content }}
{% else %}\
{% set speaker = m.name or (user_name if m.role == 'user' else char_name) %}\
{% set text = m.content if m.content.startswith('“') else '“' + m.content + '”' %}\
{{ speaker }}曰：{{ text }}
{% endif %}{% endfor %}\
{% if add_generation_prompt %}{{ char_name }}曰：{% endif %}"""


NAMED_TEMPLATES: dict[str, ChatTemplate] = {
    t.name: t
    for t in [
        ChatTemplate(
            "chatml", _CHATML, ["<|im_end|>", "<|im_start|>"], "ChatML (Qwen, Yi, many fine-tunes)"
        ),
        ChatTemplate("llama2", _LLAMA2, ["</s>", "[INST]"], "Llama 2 chat [INST] blocks"),
        ChatTemplate(
            "alpaca",
            _ALPACA,
            ["### Instruction:", "### Response:"],
            "Alpaca instruction format (CaMA, CLAM)",
        ),
        ChatTemplate(
            "vicuna",
            _VICUNA,
            ["User:", "User：", "\nUser"],
            "Chinese-Vicuna User:/Assistant: chat",
        ),
        ChatTemplate("chatglm", _CHATGLM, ["[Round", "问：", "\n问"], "ChatGLM-6B [Round n] 问/答"),
        ChatTemplate("baichuan", _BAICHUAN, ["<reserved_106>", "</s>"], "Baichuan 2 chat"),
        ChatTemplate(
            "cosplay",
            _COSPLAY,
            ["\n", *CJK_SPEAKER_STOPS],
            "Four Classics dialogue: narration, then 某某曰：“……”",
        ),
    ]
}

# End-of-turn markers found in model-provided templates; used as stop strings.
_KNOWN_END_MARKERS = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
]

# File-name patterns for models whose files carry no template.
_NAME_GUESSES = [
    (re.compile(r"chatglm", re.I), "chatglm"),
    (re.compile(r"baichuan", re.I), "baichuan"),
    (re.compile(r"vicuna", re.I), "vicuna"),
    (re.compile(r"alpaca|cama|clam", re.I), "alpaca"),
    (re.compile(r"cosplay", re.I), "cosplay"),
    (re.compile(r"llama-?2", re.I), "llama2"),
    (re.compile(r"qwen|yi-|chatml", re.I), "chatml"),
]


def get_template(name: str) -> ChatTemplate:
    try:
        return NAMED_TEMPLATES[name]
    except KeyError:
        known = ", ".join(NAMED_TEMPLATES)
        raise TemplateError(
            _("Unknown template {name!r}; choose one of: {known}.", name=name, known=known)
        ) from None


def model_template(source: str, eos_token: str = "") -> ChatTemplate:
    """Wrap a model's own Jinja chat template, deriving its stop strings."""
    _compile(source)  # fail early with a clear message
    stop = [m for m in _KNOWN_END_MARKERS if m in source]
    if eos_token and eos_token not in stop:
        stop.append(eos_token)
    return ChatTemplate("model", source, stop, "the model's own chat template")


def choose_template(
    requested: str | None, model_source: str | None, model_name: str, eos_token: str = ""
) -> ChatTemplate:
    """The explicit choice, else the model's own template, else a guess from its name, else ChatML."""
    if requested and requested != "auto":
        if requested == "model":
            if not model_source:
                raise TemplateError(
                    _(
                        "{model_name} carries no chat template; choose a named one with --template.",
                        model_name=model_name,
                    )
                )
            return model_template(model_source, eos_token)
        return get_template(requested)
    if model_source:
        return model_template(model_source, eos_token)
    for pattern, name in _NAME_GUESSES:
        if pattern.search(model_name):
            return NAMED_TEMPLATES[name]
    return NAMED_TEMPLATES["chatml"]


class TemplateSwitch:
    """An engine's chat template: the one chosen at load time, which a persona may override.

    `set_template(name)` switches to a named template (or "model"); `set_template(None)` goes
    back to the load-time choice. Engines call `_init_template` once their tokenizer is known.
    """

    template: ChatTemplate
    template_name: str
    default_template: ChatTemplate
    speaker: str = ""  # who replies, for templates that write the name (cosplay: 某某曰：)

    def _init_template(
        self, requested: str | None, model_source: str | None, model_name: str, eos_token: str
    ) -> None:
        self._template_source = (model_source, model_name, eos_token)
        self.default_template = choose_template(requested, *self._template_source)
        self.set_template(None)

    def set_template(self, name: str | None, *, speaker: str = "") -> None:
        """Use the template `name` from now on (None: the one chosen at load time), with
        `speaker` as the replying character's name ("": the last named assistant line's)."""
        template = choose_template(name, *self._template_source) if name else self.default_template
        self.template, self.template_name, self.speaker = template, template.name, speaker

"""The dataset formats: a decoded record → a `Sample`, one parser per format.

A parser raises `RecordProblem` for a record it cannot read (the loader stops, or skips it with
`--skip-bad`) and `NothingToTrain` for a well-formed record with no reply in it (always
skipped, and counted). A record that trains despite a problem carries a `warning`.

The `cosplay` format is tolerant: any `context`/`chat` pair trains. The speaker is
metadata: it is read from a `speaker` field, else from the context's end (`曹洪曰：`, also
past a typo such as `乾曰；`); a context where no speaker can be read is still a prompt,
trained as written (`Sample.prompt`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engines.i18n import N_, _

FORMATS = ("cosplay", "alpaca", "sharegpt", "messages", "vicuna", "text")

# `某某曰：` / `某某笑道：` / `某某说：` at the end of a cosplay context; group 3 is the mark after
# the verb (a colon, or a typo of one), and an opening quote may follow it.
_SPEAKER_PREFIX = re.compile(
    r"([^，。！？；：“”‘’、,.!?;:\s]{1,12}?)(曰|道|说|云|问|答)\s*([：:；;，,])\s*“?\s*$"
)
_COLONS = "：:"

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}

# Kinds of problem, English in the run files, translated where they are shown.
NO_SPEAKER = N_("no speaker")
PREFIX_TYPO = N_("speaker prefix typo")
NOTHING_TO_TRAIN = N_("nothing to train")


@dataclass
class Sample:
    """One training example: chat messages, or (format `text`) one raw document.

    `prompt`, for a cosplay record whose speaker cannot be read: the context exactly as
    written, which the `cosplay` template trains the reply after (other templates use the
    messages). `warning`: a problem the record trains despite, with `warning_kind`.
    """

    messages: list[dict[str, str]] = field(default_factory=list)
    text: str = ""
    speaker: str | None = None
    line: int = 0  # where the record starts in its file (1-based)
    prompt: str | None = None
    warning: str = ""
    warning_kind: str = ""


class RecordProblem(Exception):
    """A record that cannot be read: the loader stops, or skips it with --skip-bad."""


class NothingToTrain(RecordProblem):
    """A well-formed record with no reply to learn from: skipped and counted, never fatal."""


# --- format detection ------------------------------------------------------------------


def detect_format(record: object) -> str | None:
    """The format a decoded record looks like, or None."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if {"context", "chat"} <= keys:
        return "cosplay"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if isinstance(record.get("input"), list) and isinstance(record.get("output"), list):
        return "vicuna"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    return None


# --- per-format parsers: record -> Sample (or raise RecordProblem) ------------------------------


def _string(record: dict, key: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        if key in record:
            raise RecordProblem(_('"{key}" must be a string', key=key))
        raise RecordProblem(_('"{key}" must be a string and is missing', key=key))
    if required and not value.strip():
        raise RecordProblem(_('"{key}" is empty', key=key))
    return value


def parse_speaker(context: str) -> tuple[str, str] | None:
    """(narration, speaker) from a context ending in `某某曰：` (or `某某曰；`, `某某曰：“`), else None."""
    from engines.train.extract import clean_speaker

    match = _SPEAKER_PREFIX.search(context)
    if not match:
        return None
    clause = match.group(1).strip()
    # A clause that is not a clean name (`upon孔明`) still ends with one: take its last two characters.
    speaker = clean_speaker(clause) or clause[-2:]
    start = match.start(1) + match.group(1).rfind(speaker) if speaker in clause else match.start()
    return context[:start].rstrip(), speaker


def parse_cosplay(record: dict) -> Sample:
    """Any context/chat pair: narration + speaker when they can be read, else the context as a prompt."""
    context = _string(record, "context", required=False)
    chat = _string(record, "chat", required=False)
    if not chat.strip():
        raise NothingToTrain(_('"chat" is empty: there is no reply to learn from'))
    chat = chat.strip()
    named = record.get("speaker")
    named = named.strip() if isinstance(named, str) and named.strip() else None
    parsed = parse_speaker(context)
    if parsed is None:
        return _unnamed(context, chat, named)
    narration, speaker = parsed
    sample = _named(narration, chat, named or speaker)
    if context.rstrip().rstrip("“").rstrip()[-1:] not in _COLONS:
        prefix = context[len(narration) :].strip()
        sample.warning = _(
            "the speaker prefix {prefix} is not followed by a colon; read as {speaker}曰：",
            prefix=prefix,
            speaker=speaker,
        )
        sample.warning_kind = PREFIX_TYPO
    if context.rstrip().endswith("“") and not chat.startswith("“"):
        sample.messages[-1]["content"] = "“" + chat  # the quote opened in the context
    return sample


def _named(narration: str, chat: str, speaker: str) -> Sample:
    messages = [{"role": "system", "content": narration}] if narration else []
    messages.append({"role": "assistant", "name": speaker, "content": chat})
    return Sample(messages=messages, speaker=speaker)


def _unnamed(context: str, chat: str, named: str | None) -> Sample:
    messages = [{"role": "system", "content": context}] if context.strip() else []
    message = {"role": "assistant", "content": chat}
    if named:
        message["name"] = named
    messages.append(message)
    tail = context.rstrip()
    tail = ("…" + tail[-16:] if len(tail) > 16 else tail) or _("(empty)")
    return Sample(
        messages=messages,
        speaker=named,
        prompt=context,
        warning=_(
            'the context ends in "{tail}", not a speaker prefix such as 曹洪曰：; trained as a '
            "plain prompt",
            tail=tail,
        ),
        warning_kind=NO_SPEAKER,
    )


def parse_alpaca(record: dict) -> Sample:
    instruction = _string(record, "instruction")
    extra = _string(record, "input", required=False)
    output = _string(record, "output")
    messages = []
    system = _string(record, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise RecordProblem(_('"history" must be a list of [question, answer] pairs'))
    for pair in history:
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(x, str) for x in pair)
        ):
            raise RecordProblem(_('"history" must be a list of [question, answer] pairs'))
        messages += [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    user = f"{instruction}\n{extra}" if extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return Sample(messages=messages)


def _check_turns(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise NothingToTrain(_("the conversation has no assistant reply to learn from"))
    return messages


def parse_sharegpt(record: dict) -> Sample:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordProblem(_('"conversations" must be a non-empty list'))
    messages = []
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordProblem(_("conversation turn {number} is not an object", number=index + 1))
        speaker = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        role = _SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise RecordProblem(
                _(
                    'conversation turn {number} has unknown "from": {speaker}',
                    number=index + 1,
                    speaker=repr(speaker),
                )
            )
        if not isinstance(value, str):
            raise RecordProblem(
                _('conversation turn {number} has no string "value"', number=index + 1)
            )
        messages.append({"role": role, "content": value})
    return Sample(messages=_check_turns(messages))


def parse_messages(record: dict) -> Sample:
    turns = record.get("messages")
    if not isinstance(turns, list) or not turns:
        raise RecordProblem(_('"messages" must be a non-empty list'))
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordProblem(_("message {number} is not an object", number=index + 1))
        role, content = turn.get("role"), turn.get("content")
        if role not in ("system", "user", "assistant"):
            raise RecordProblem(
                _(
                    "message {number} has role {role}; use system, user or assistant",
                    number=index + 1,
                    role=repr(role),
                )
            )
        if not isinstance(content, str):
            raise RecordProblem(_('message {number} has no string "content"', number=index + 1))
        message = {"role": role, "content": content}
        if isinstance(turn.get("name"), str) and turn["name"]:
            message["name"] = turn["name"]
        messages.append(message)
    return Sample(messages=_check_turns(messages))


def parse_vicuna(record: dict) -> Sample:
    inputs, outputs = record.get("input"), record.get("output")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise RecordProblem(_('"input" and "output" must be lists of turns'))
    if len(inputs) != len(outputs) or not inputs:
        raise RecordProblem(
            _(
                '"input" has {inputs} turns but "output" has {outputs}; they must pair up',
                inputs=len(inputs),
                outputs=len(outputs),
            )
        )
    if not all(isinstance(x, str) for x in inputs + outputs):
        raise RecordProblem(_('every "input" and "output" turn must be a string'))
    messages = []
    system = record.get("instruction")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for question, answer in zip(inputs, outputs, strict=True):
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    return Sample(messages=_check_turns(messages))


def parse_text(record: dict) -> Sample:
    return Sample(text=_string(record, "text"))


PARSERS = {
    "cosplay": parse_cosplay,
    "alpaca": parse_alpaca,
    "sharegpt": parse_sharegpt,
    "messages": parse_messages,
    "vicuna": parse_vicuna,
    "text": parse_text,
}

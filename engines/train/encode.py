"""Samples → token ids and labels, with the prompt masked (-100) and only replies trained.

A conversation is rendered with the same `ChatTemplate` chat uses, one turn at
a time: for every assistant message, the prompt up to its generation prompt is
one segment (not trained) and the reply that follows is another (trained).
Segments are tokenized separately and concatenated, so the boundary between
prompt and reply is exact — the way chat tokenizes a prompt and then generates.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.base import TemplateError
from engines.i18n import _
from engines.templates import ChatTemplate
from engines.train.data import chunk_ids
from engines.train.formats import Sample

IGNORE_INDEX = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    def as_features(self) -> dict[str, list[int]]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": [1] * len(self.input_ids),
            "labels": self.labels,
        }


def conversation_segments(
    messages: list[dict[str, str]], template: ChatTemplate, *, char_name: str = ""
) -> list[tuple[str, bool]]:
    """(text, trained) pieces that concatenate to the rendered conversation up to its last reply."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        name = message.get("name") or char_name
        prompt = template.render(messages[:index], add_generation_prompt=True, char_name=name)
        full = template.render(messages[: index + 1], add_generation_prompt=False, char_name=name)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise TemplateError(
                _(
                    "The template '{name}' does not render replies after their prompt, so the "
                    "prompt cannot be masked; choose another with --template.",
                    name=template.name,
                )
            )
        segments.append((prompt[len(done) :], False))
        segments.append((full[len(prompt) :], True))
        done = full
    return segments


def training_segments(
    sample: Sample, template: ChatTemplate, *, char_name: str = ""
) -> list[tuple[str, bool]]:
    """The (text, trained) pieces of a chat sample. A cosplay record whose speaker could not be
    read (`sample.prompt`) is, under the `cosplay` template, its context as written and the reply
    after it, ended as the template ends a turn: naming a speaker there would invent one."""
    if sample.prompt is not None and template.name == "cosplay":
        reply = sample.messages[-1]["content"]
        return [(sample.prompt, False), (reply + "\n", True)]
    return conversation_segments(sample.messages, template, char_name=char_name)


def encode_sample(
    sample: Sample,
    template: ChatTemplate,
    tokenizer,
    *,
    cutoff_len: int,
    char_name: str = "",
    add_eos: bool = True,
) -> Encoded | None:
    """Token ids and labels for one chat sample (None when nothing trainable survives the cutoff)."""
    eos_text = tokenizer.eos_token or ""
    ids: list[int] = []
    labels: list[int] = []
    segments = training_segments(sample, template, char_name=char_name)
    for position, (text, trained) in enumerate(segments):
        if not text:
            continue
        piece = tokenizer(text, add_special_tokens=not ids)["input_ids"]
        last_reply = trained and position == len(segments) - 1
        if last_reply and add_eos and tokenizer.eos_token_id is not None and eos_text not in text:
            piece = [*piece, tokenizer.eos_token_id]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    truncated = len(ids) > cutoff_len
    ids, labels = ids[:cutoff_len], labels[:cutoff_len]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return Encoded(ids, labels, truncated)


def encode_text(text: str, tokenizer, *, cutoff_len: int, overlap: int) -> list[Encoded]:
    """A raw document as overlapping windows of `cutoff_len` tokens, every token trained."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [
        Encoded(list(chunk), list(chunk))
        for chunk in chunk_ids(ids, cutoff_len, overlap)
        if len(chunk) > 1
    ]


def encode_all(
    samples: list[Sample],
    template: ChatTemplate,
    tokenizer,
    *,
    cutoff_len: int,
    overlap: int = 0,
    char_name: str = "",
) -> tuple[list[Encoded], int]:
    """Every sample encoded; also the number of samples dropped because the cutoff left no reply."""
    encoded: list[Encoded] = []
    dropped = 0
    for sample in samples:
        if not sample.messages:
            encoded += encode_text(sample.text, tokenizer, cutoff_len=cutoff_len, overlap=overlap)
            continue
        item = encode_sample(
            sample, template, tokenizer, cutoff_len=cutoff_len, char_name=char_name
        )
        if item is None:
            dropped += 1
        else:
            encoded.append(item)
    return encoded, dropped


def render_marked(item: Encoded, tokenizer, *, open_mark: str = "⟦", close_mark: str = "⟧") -> str:
    """The sample as text with the trained (unmasked) spans between marks, for --dry-run."""
    out: list[str] = []
    start = 0
    for index in range(1, len(item.input_ids) + 1):
        boundary = index == len(item.input_ids) or (
            (item.labels[index] == IGNORE_INDEX) != (item.labels[start] == IGNORE_INDEX)
        )
        if not boundary:
            continue
        text = tokenizer.decode(item.input_ids[start:index], skip_special_tokens=False)
        out.append(text if item.labels[start] == IGNORE_INDEX else f"{open_mark}{text}{close_mark}")
        start = index
    return "".join(out)

"""Masking: labels are -100 exactly on the prompt, and the collator keeps them that way."""

from __future__ import annotations

import pytest

from engines.base import TemplateError
from engines.templates import ChatTemplate, get_template
from engines.train.data import Sample
from engines.train.encode import (
    IGNORE_INDEX,
    conversation_segments,
    encode_all,
    encode_sample,
    render_marked,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama["hf"])


COSPLAY = Sample(
    messages=[
        {"role": "system", "content": "曹仁回城中，与众商议。"},
        {"role": "assistant", "name": "曹洪", "content": "“目今失了彝陵，势已危急。”"},
    ],
    speaker="曹洪",
)
CHAT = Sample(
    messages=[
        {"role": "system", "content": "You are Kongming."},
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "I am fine, thank you."},
        {"role": "user", "content": "tell me a story"},
        {"role": "assistant", "content": "Once upon a time there was a king."},
    ]
)


def test_single_turn_prompt_is_masked_exactly(tokenizer):
    template = get_template("cosplay")
    item = encode_sample(COSPLAY, template, tokenizer, cutoff_len=512)
    prompt = template.render(COSPLAY.messages[:1], add_generation_prompt=True, char_name="曹洪")
    assert prompt == "曹仁回城中，与众商议。\n曹洪曰："
    prompt_ids = tokenizer(prompt)["input_ids"]
    n = len(prompt_ids)
    assert item.input_ids[:n] == prompt_ids
    assert item.labels[:n] == [IGNORE_INDEX] * n
    assert item.labels[n:] == item.input_ids[n:] and IGNORE_INDEX not in item.labels[n:]
    reply = tokenizer.decode(item.input_ids[n:])
    assert (
        reply == "“目今失了彝陵，势已危急。”\n" + tokenizer.eos_token
    )  # the reply, its newline, EOS


def test_multi_turn_trains_every_reply_and_nothing_else(tokenizer):
    template = get_template("chatml")
    item = encode_sample(CHAT, template, tokenizer, cutoff_len=512)
    trained = [
        t for t, label in zip(item.input_ids, item.labels, strict=True) if label != IGNORE_INDEX
    ]
    masked = [
        t for t, label in zip(item.input_ids, item.labels, strict=True) if label == IGNORE_INDEX
    ]
    assert tokenizer.decode(trained) == (
        "I am fine, thank you.<|im_end|>\nOnce upon a time there was a king.<|im_end|>\n"
    )
    decoded_prompt = tokenizer.decode(masked)
    assert "Hello, how are you?" in decoded_prompt and "I am fine" not in decoded_prompt
    assert decoded_prompt.count("<|im_start|>assistant\n") == 2
    full = template.render(CHAT.messages, add_generation_prompt=False)
    assert (
        tokenizer.decode(item.input_ids) == full
    )  # segments concatenate to the whole conversation
    marked = render_marked(item, tokenizer)
    assert "⟦I am fine, thank you.<|im_end|>\n⟧" in marked


def test_cutoff_truncates_and_drops_samples_without_a_reply(tokenizer):
    template = get_template("chatml")
    full = encode_sample(CHAT, template, tokenizer, cutoff_len=10_000)
    cut = len(full.input_ids) - 3
    item = encode_sample(CHAT, template, tokenizer, cutoff_len=cut)
    assert item.truncated and not full.truncated
    assert item.input_ids == full.input_ids[:cut] and item.labels == full.labels[:cut]
    encoded, dropped = encode_all([CHAT], template, tokenizer, cutoff_len=5)
    assert encoded == [] and dropped == 1


def test_text_samples_are_chunked_and_fully_trained(tokenizer):
    text = "The quick brown fox jumps over the lazy dog. " * 20
    encoded, _ = encode_all(
        [Sample(text=text)], get_template("chatml"), tokenizer, cutoff_len=32, overlap=8
    )
    assert len(encoded) > 3
    assert all(e.labels == e.input_ids and len(e.input_ids) <= 32 for e in encoded)
    assert encoded[0].input_ids[-8:] == encoded[1].input_ids[:8]


def test_template_that_rewrites_history_is_refused():
    odd = ChatTemplate(
        "odd",
        "{% for m in messages %}{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}>>>{% endif %}",
    )
    with pytest.raises(TemplateError, match="prompt cannot be masked"):
        conversation_segments(CHAT.messages, odd)


def test_collator_keeps_the_labels(tokenizer):
    from transformers import DataCollatorForSeq2Seq

    template = get_template("chatml")
    short = encode_sample(Sample(messages=CHAT.messages[:3]), template, tokenizer, cutoff_len=512)
    long = encode_sample(CHAT, template, tokenizer, cutoff_len=512)
    batch = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(
        [short.as_features(), long.as_features()]
    )
    n = len(short.input_ids)
    assert batch["labels"][0, :n].tolist() == short.labels
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][0].sum().item() == n
    assert batch["labels"][1].tolist() == long.labels


def test_a_context_without_a_speaker_is_the_prompt_as_written(tokenizer, tmp_path):
    from engines.train.data import load_dataset

    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"context": "天下大势，分久必合。", "chat": "“合久必分。”"}\n', encoding="utf-8"
    )
    sample = load_dataset(path).samples[0]
    item = encode_sample(
        sample, get_template("cosplay"), tokenizer, cutoff_len=512, char_name="曹洪"
    )
    prompt_ids = tokenizer("天下大势，分久必合。")["input_ids"]
    n = len(prompt_ids)
    assert item.input_ids[:n] == prompt_ids and item.labels[:n] == [IGNORE_INDEX] * n
    reply = tokenizer.decode(item.input_ids[n:])
    assert reply == "“合久必分。”\n" + tokenizer.eos_token  # no speaker invented (no 曹洪曰：)
    assert IGNORE_INDEX not in item.labels[n:]
    chatml = encode_sample(sample, get_template("chatml"), tokenizer, cutoff_len=512)
    marked = render_marked(chatml, tokenizer)  # other templates: the context as the system turn
    assert "system\n天下大势，分久必合。<|im_end|>" in marked and "⟦“合久必分。”" in marked

import pytest

from engines.base import TemplateError
from engines.templates import NAMED_TEMPLATES, choose_template, get_template, model_template
from tests.tiny_models import CHATML

CONVERSATION = [
    {"role": "system", "content": "你是诸葛亮。"},
    {"role": "user", "content": "先生何往？"},
    {"role": "assistant", "content": "亮欲往江东。"},
    {"role": "user", "content": "Why?"},
]


@pytest.mark.parametrize("name", sorted(NAMED_TEMPLATES))
def test_every_named_template_renders_all_turns(name):
    text = get_template(name).render(CONVERSATION, char_name="诸葛亮", user_name="鲁肃")
    for message in CONVERSATION:
        assert message["content"] in text
    assert get_template(name).stop, "every template must carry stop strings"


@pytest.mark.parametrize("name", sorted(NAMED_TEMPLATES))
def test_templates_are_prefix_stable(name):
    """Turn N+1's prompt starts with turn N's conversation: the KV cache can keep hitting."""
    template = get_template(name)
    earlier = template.render(CONVERSATION[:3], add_generation_prompt=False, char_name="诸葛亮")
    later = template.render(CONVERSATION, add_generation_prompt=True, char_name="诸葛亮")
    assert later.startswith(earlier)


def test_chatml_exact_rendering():
    text = get_template("chatml").render(CONVERSATION[:2])
    assert text == (
        "<|im_start|>system\n你是诸葛亮。<|im_end|>\n"
        "<|im_start|>user\n先生何往？<|im_end|>\n<|im_start|>assistant\n"
    )


def test_cosplay_template_ends_with_speaker_prefix_and_stops_on_speakers():
    template = get_template("cosplay")
    text = template.render(
        [
            {"role": "system", "content": "曹仁回城中，与众商议。"},
            {"role": "user", "content": "奈何？", "name": "曹仁"},
        ],
        char_name="曹洪",
    )
    assert text == "曹仁回城中，与众商议。\n曹仁曰：“奈何？”\n曹洪曰："
    assert "曰：" in template.stop and "\n" in template.stop


def test_chatglm_and_vicuna_shapes():
    glm = get_template("chatglm").render(CONVERSATION)
    assert "[Round 0]\n问：先生何往？\n答：亮欲往江东。\n[Round 1]\n问：Why?\n答：" in glm
    vicuna = get_template("vicuna").render(CONVERSATION)
    assert vicuna.endswith("User:Why?\n\nAssistant:")
    assert "User：" in get_template("vicuna").stop


def test_unknown_template_is_a_clear_error():
    with pytest.raises(TemplateError, match="Unknown template 'nope'.*chatml"):
        get_template("nope")


def test_model_template_first_then_name_guess_then_chatml():
    assert choose_template(None, CHATML, "x.gguf").name == "model"
    assert "<|im_end|>" in model_template(CHATML).stop
    assert choose_template(None, None, "chatglm-6b-q4.gguf").name == "chatglm"
    assert choose_template(None, None, "Baichuan2-7B-Chat.Q4_K_M.gguf").name == "baichuan"
    assert choose_template(None, None, "mystery.gguf").name == "chatml"
    assert choose_template("alpaca", CHATML, "x.gguf").name == "alpaca"
    with pytest.raises(TemplateError, match="carries no chat template"):
        choose_template("model", None, "x.gguf")


def test_broken_model_template_is_a_clear_error():
    with pytest.raises(TemplateError, match="does not parse"):
        model_template("{% for m in messages %}")
    failing = model_template("{{ raise_exception('only user and assistant roles') }}")
    with pytest.raises(TemplateError, match="failed to render.*only user"):
        failing.render(CONVERSATION)


HOSTILE_TEMPLATES = {
    "nested range": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "huge power": "{{ 10**100000000 }}",
    "huge repeat": "{{ 'x' * 3000000000 }}",
    "huge list repeat": "{% for m in messages * 100000000 %}{% endfor %}",
    "division by zero": "{{ 1/0 }}",
    "recursive macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "include": "{% include 'x' %}",
    "strftime_now(1)": "{{ strftime_now(1) + 1 }}",
    "raise_exception": "{{ raise_exception('no [/] system role') }}",
    "renders nothing": "{% for m in messages %}{% endfor %}",
    "doubling loop": "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
}


@pytest.mark.parametrize("name", HOSTILE_TEMPLATES)
def test_a_hostile_model_template_fails_fast_with_one_sentence(name):
    import time

    from engines.base import TemplateError
    from engines.templates import model_template

    template = model_template(HOSTILE_TEMPLATES[name], "<|im_end|>")
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        template.render([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith("The model's own chat template") and "--template chatml" in message
    assert "\n" not in message


def test_a_template_that_does_not_parse_is_a_clear_error_and_chatml_still_works():
    from engines.base import TemplateError
    from engines.templates import choose_template

    broken = "{% for m in messages %}"
    with pytest.raises(TemplateError, match="does not parse.*--template chatml"):
        choose_template(None, broken, "model.gguf")
    assert choose_template("chatml", broken, "model.gguf").name == "chatml"

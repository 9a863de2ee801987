"""The loss on trained positions only equals the model's own loss, and so do its gradients."""

from __future__ import annotations

import pytest

from tests.hf_support import needs

pytestmark = needs("torch", "transformers", "peft")


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("items", [None, 7], ids=["mean", "sum-over-items"])
def test_trained_positions_loss_equals_the_models_loss(request, arch, items):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engines.train.loss import causal_lm_of, trained_positions_loss

    torch.manual_seed(0)
    hf = request.getfixturevalue(f"tiny_{arch}")["hf"]
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(model, config)
    ids = torch.randint(5, 300, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding
    labels = ids.clone()
    labels[0, :5] = -100  # a prompt
    labels[1, :3] = -100
    labels[1, 9:] = -100  # the padding
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    count = None if items is None else torch.tensor(items)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    extra = {} if count is None else {"num_items_in_batch": count}
    expected = model(**batch, **extra).loss
    expected_grads = grads(expected)
    causal_lm = causal_lm_of(model)
    assert causal_lm is not None
    got = trained_positions_loss(causal_lm, batch, count)
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)
    for a, b in zip(grads(got), expected_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_other_heads_keep_the_trainers_loss():
    from engines.train.loss import causal_lm_of

    class Config:
        model_type = "gemma2"  # soft-caps its logits

    class Model:
        config = Config()

    assert causal_lm_of(Model()) is None


def test_training_steps_use_it(tiny_llama, tmp_path, monkeypatch):
    from engines.train import loss
    from engines.train.trainer import train
    from tests.test_train_run import write_data

    calls = []
    original = loss.trained_positions_loss

    def counted(causal_lm, inputs, num_items_in_batch=None):
        calls.append(int((inputs["labels"][:, 1:] != -100).sum()))
        return original(causal_lm, inputs, num_items_in_batch)

    monkeypatch.setattr(loss, "trained_positions_loss", counted)
    data = write_data(tmp_path / "d.jsonl", copies=1)
    result = train(base=str(tiny_llama["hf"]), data=str(data), out=str(tmp_path / "o"),
                   max_steps=2, batch_size=2, grad_accum=2, progress=False)  # fmt: skip
    assert result.status == "finished" and len(calls) == 4 and all(calls)

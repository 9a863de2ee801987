"""The training loss computed on the trained positions only.

A causal LM's forward computes logits for every position (vocabulary × sequence × batch),
then the loss ignores the prompt and the padding (-100 labels). For a small model with a big
vocabulary (SmolLM2: 49,152 tokens, 576 wide) the output layer is a fifth of the work and the
prompt is most of a roleplay sample, so those logits are the largest waste of a CPU step. Here
the decoder's last hidden states are taken and only the positions whose next token is trained
go through the output layer; the loss (mean, or sum ÷ `num_items_in_batch` as transformers
computes it for gradient accumulation) is the same number.

Used for the architectures whose logits are exactly `lm_head(model(...).last_hidden_state)`;
any other model, evaluation, label smoothing and multi-process runs keep the Trainer's own
loss. Imported by the trainer only: it imports torch.
"""

from __future__ import annotations

import torch
from transformers import Trainer

IGNORE_INDEX = -100
# Their CausalLM forward is `logits = lm_head(model(...)[0])`: no soft-capping, no logit scale.
PLAIN_HEAD_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def causal_lm_of(model):
    """The transformers CausalLM inside a (PEFT-wrapped) model when its head is plain, else None."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES:
        return None
    if not isinstance(getattr(inner, "model", None), torch.nn.Module):
        return None
    return inner if inner.get_output_embeddings() is not None else None


def trained_positions_loss(causal_lm, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """Next-token cross-entropy over the positions whose label is trained."""
    hidden = causal_lm.model(
        input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
    ).last_hidden_state
    targets = inputs["labels"][:, 1:].to(hidden.device)
    keep = targets != IGNORE_INDEX
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(logits, targets[keep])
    total = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


class TrainedPositionsLossMixin:
    """A Trainer mix-in: the training loss without logits for the prompt and the padding."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        causal_lm = causal_lm_of(self.accelerator.unwrap_model(model))
        plain = (
            causal_lm is not None
            and not return_outputs
            and model.training
            and "labels" in inputs
            and self.label_smoother is None
            and self.compute_loss_func is None
            and self.accelerator.num_processes == 1
            and self.args.n_gpu <= 1
        )
        if not plain:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not self.model_accepts_loss_kwargs:
            num_items_in_batch = None  # the Trainer divides by the accumulation steps itself
        return trained_positions_loss(causal_lm, inputs, num_items_in_batch)


class TrainedPositionsTrainer(TrainedPositionsLossMixin, Trainer):
    pass

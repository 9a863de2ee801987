"""Shared scaffolding of the GPU-engine tests: skip without the extras, import lazily."""

from __future__ import annotations

import importlib.util

import pytest


def installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def needs(*names: str) -> pytest.MarkDecorator:
    """Skip a module when the GPU engine's extras are missing (torch is never imported to check)."""
    return pytest.mark.skipif(
        not installed(*names), reason="the GPU engine's extras are not installed"
    )


def HFEngine(*args, **kwargs):  # noqa: N802 - stands in for the class, imported lazily
    from engines.hf import HFEngine as Engine

    return Engine(*args, **kwargs)

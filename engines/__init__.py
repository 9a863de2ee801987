"""Engines that run a language model in-process. Heavy backends are imported lazily."""

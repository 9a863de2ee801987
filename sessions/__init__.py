"""Sessions, messages, personas and prompt building. No UI, no heavy imports."""

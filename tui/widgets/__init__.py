"""Reusable widgets of the chat screen. Each posts messages up; none touches storage."""

"""The Textual app and the `cosplay` command line."""

__version__ = "0.1.0"

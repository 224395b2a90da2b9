"""Placeholder: this provider is being written (registers nothing yet)."""

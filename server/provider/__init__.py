"""Talking to the media generation provider (Replicate, or the built-in simulator)."""

"""Tests of the model catalogue, schema-driven input validation and image-to-video."""

"""Reelforge: turn an image from your library into a short video through a template."""

"""Converters: the API, the worker processes that run them, the built-in formats."""

"""Lifecycle definitions as YAML data (package data, read by engine.lifecycle)."""

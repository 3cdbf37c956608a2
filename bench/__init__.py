"""Benchmarks: kindle_store side by side with the ORM design it replaces, the floor, and the old JSON file.

Run `python -m bench [--quick] [--dsn URL]` (or `just bench`); see bench/__main__.py.
"""

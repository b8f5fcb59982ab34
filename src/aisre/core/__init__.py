"""Vocabulary every layer speaks: no I/O here."""

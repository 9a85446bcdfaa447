"""Bilingual email newsletter pipeline."""

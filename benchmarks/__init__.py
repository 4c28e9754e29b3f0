"""Reproducible benchmark scripts and configurations."""

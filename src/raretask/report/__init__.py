"""Rendering of results: console tables, figures and self-contained HTML reports."""

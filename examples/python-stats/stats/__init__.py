"""Descriptive statistics of a list of numbers."""

from .summary import mean, median, summarize

__all__ = ["mean", "median", "summarize"]

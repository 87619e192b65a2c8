"""Example job functions: the entrypoints of the Functions ``deployments/local/functions.yaml`` registers.

Small, pure and typed, so that the guides' commands work as written after
``mnemos apply -f deployments/local/``::

    mnemos jobs submit word-count -k text='one two two' --wait     # {"one": 1, "two": 2}
"""

from __future__ import annotations

from collections import Counter

__all__ = ["word_count"]


def word_count(text: str) -> dict[str, int]:
    """How many times each word of ``text`` occurs, in order of first appearance.

    Words are what ``str.split()`` finds (runs of non-whitespace), kept as written: ``The`` and
    ``the`` are two words.

    >>> word_count("one two two")
    {'one': 1, 'two': 2}
    """
    return dict(Counter(text.split()))

"""Cutting documents into chunks of about one training sequence each.

Chunks are cut by characters before any tokenizer exists (the tokenizer is trained on the chunks
of the generic pool), so their length in tokens is only about the model's context: the length in
characters is `context_length * chars_per_token`. Each cut is made at the last paragraph break,
else line break, else space, in the second half of the window, so words and lines stay whole.
"""

from __future__ import annotations

SEPARATORS = ("\n\n", "\n", " ")


def chunk_text(text: str, max_chars: int, min_chars: int) -> list[str]:
    """Pieces of at most ``max_chars`` characters; pieces with fewer than ``min_chars``
    non-blank characters (near-empty ones) are dropped."""
    if max_chars < 1:
        raise ValueError(f"chunks need at least one character, got max_chars={max_chars}")
    pieces = []
    start = 0
    while start < len(text):
        end = min(start + max_chars, len(text))
        if end < len(text):
            end = _cut(text, start, end)
        piece = text[start:end].strip("\n").rstrip()
        if len(piece.strip()) >= min_chars:
            pieces.append(piece)
        start = end
    return pieces


def _cut(text: str, start: int, end: int) -> int:
    """Where to end the piece text[start:end]: after the last separator in its second half."""
    middle = start + (end - start) // 2
    for separator in SEPARATORS:
        position = text.rfind(separator, middle, end)
        if position >= 0:
            return position + len(separator)
    return end

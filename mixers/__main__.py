"""`python -m mixers`: every mixer and preset, with its family, reference, cost and config."""

from mixers.catalogue import table

print("\n".join(table()))

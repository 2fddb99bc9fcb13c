"""`make bench`: the conversion engine and the whole service against their targets (see __main__.py)."""

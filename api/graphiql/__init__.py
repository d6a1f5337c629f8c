"""GraphiQL served from ragql itself, so it loads on a machine without internet (see assets.py)."""

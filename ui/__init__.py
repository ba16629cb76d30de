"""The app's tabs, each a small module that builds its part of the Blocks (see app.py)."""

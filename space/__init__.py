"""The demo Space: ``app.py`` is the Space itself; ``python -m space`` stages its repo folder."""

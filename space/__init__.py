"""The demo Space: ``space/demo/`` is the Space itself; ``python -m space`` stages its repo."""

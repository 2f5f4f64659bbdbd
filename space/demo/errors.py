"""The one error a user can fix: every check of a search raises it, and the page shows it.

Its messages are built from numbers and settings only, never from the user's documents, so
nothing a user uploads is ever echoed into the page as markup.
"""

from __future__ import annotations


class InputError(ValueError):
    """Something the user can fix; its message is shown as is."""

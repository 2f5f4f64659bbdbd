"""Code truly shared by the stages: config loading, logging, bundled offline assets."""

__version__ = "0.1.0"

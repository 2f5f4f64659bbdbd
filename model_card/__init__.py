"""Evaluate the released embedder with mteb and write the model card users read."""

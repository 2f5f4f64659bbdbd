"""Publish the staged dataset, model and Space to the Hugging Face Hub (or list them)."""

"""Fine-tune a decoder LLM into an instruction-following sentence-transformers embedder."""

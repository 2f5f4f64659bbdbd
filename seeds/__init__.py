"""seeds: an LLM brainstorms embedding tasks and writes one training example per request."""

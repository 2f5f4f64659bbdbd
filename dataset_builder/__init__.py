"""Turn a seeds run (raw JSONL shards + ledger + run.json) into a Hub-native dataset repo."""

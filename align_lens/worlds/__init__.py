"""The embedded default: synthetic worlds, their tokenizer, the tiny base model and the demo."""

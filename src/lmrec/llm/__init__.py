"""Language-model generation: backends, prompts, grounding, explanations, reranking."""

"""Preparing training data from the user's own prompts: prompt and answer rows, resumable
JSONL files, reference scorers, the judge's rubric and verdicts, and grouping graded
answers into the rows ``llm-router train`` reads. Pure code: the HTTP calls that
``collect`` and ``label`` make live in ``app/loop``."""

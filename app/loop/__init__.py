"""The learning loop's offline commands that call upstreams: ``collect`` (run prompts on
candidate models) and ``label --judge`` (grade answers with an LLM). They call models
with the proxy's client code (app/proxy/upstream.py); what they read and write, and the
scoring, are pure code in models/labeling."""

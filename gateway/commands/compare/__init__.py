"""``scoring-gateway compare``: a summary of a pipeline's champion/challenger comparison records."""

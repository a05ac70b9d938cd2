"""bench: speed and memory figures (``driftrec bench scorer|swap|learner|kafka``)."""

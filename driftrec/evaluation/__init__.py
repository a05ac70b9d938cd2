"""evaluation: the prequential loop (test, then train), the baselines it runs side by side,
reports and plots (``driftrec eval``)."""

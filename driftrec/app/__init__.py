"""app: the wiring on top of the cores. The composition root (:mod:`driftrec.app.system`),
settings, the services (scorer, learner), the batch workers, the embedded runner and the
demo. Evaluation and benchmarks use it; it uses neither."""

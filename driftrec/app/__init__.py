"""app: the wiring on top of the cores. Settings, the services (scorer, learner), the batch
workers, the embedded runner and the demo. Evaluation and benchmarks use it; it uses
neither."""

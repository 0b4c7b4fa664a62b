"""How well an order of tests finds failures: the APFD family, recall at a
budget, and the scores' own quality (`scheduler.evaluation.metrics`)."""

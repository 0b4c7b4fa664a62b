"""The policy: what CI runs of a scored commit, in which order, on which shard.

Pure functions over arrays (`policy`); the service (scheduler.services.plans)
reads the stored scores and hands them in."""

"""Celery consumers: thin tasks that call `scheduler` services."""

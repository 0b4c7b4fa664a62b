"""Clients of the providers' REST APIs (GitHub, GitLab): what riskrank asks
them for, on one bounded, retrying HTTP client (http.py)."""

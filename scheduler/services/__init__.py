"""Domain logic. Every function takes the session first and options by
keyword, queries and flushes, and never commits: its caller owns the
transaction."""

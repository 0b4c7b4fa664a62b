"""The HTTP surface: FastAPI routers that speak HTTP and call services."""

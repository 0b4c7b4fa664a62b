# One image for every riskrank process (api, worker, beat, migrate): the
# compose file picks the command.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build
COPY pyproject.toml README.md alembic.ini ./
COPY scheduler ./scheduler
COPY workers ./workers
COPY migrations ./migrations
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
# LightGBM's wheel needs the OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl \
    && useradd --create-home --uid 10001 riskrank \
    && mkdir -p /var/lib/riskrank && chown riskrank /var/lib/riskrank
USER riskrank
WORKDIR /home/riskrank
# The embedded default (`docker run -v riskrank-data:/var/lib/riskrank
# riskrank up`) keeps its SQLite files in /var/lib/riskrank: mount a volume
# there. The compose file's services use PostgreSQL and Redis instead.
ENV PYTHONUNBUFFERED=1 \
    RISKRANK_HOST=0.0.0.0 \
    RISKRANK_PORT=8000 \
    RISKRANK_DATA_DIR=/var/lib/riskrank
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["riskrank"]
CMD ["serve"]

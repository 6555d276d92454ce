# The service image: dependencies are installed here, at build time, never when a container starts.
FROM python:3.11-slim
WORKDIR /app
# The runtime dependencies only (no dev extras). The install is editable because `catalog migrate` reads
# alembic.ini and migrations/ beside the package, and the default policy files from policies/.
COPY pyproject.toml README.md alembic.ini ./
COPY catalog ./catalog
COPY migrations ./migrations
COPY policies ./policies
RUN pip install --no-cache-dir -e . \
    && useradd --system --create-home --home-dir /var/lib/catalog catalog \
    && install -d -o catalog -m 0700 /var/lib/catalog/state
USER catalog
# State (logs, and the embedded server's data when no database URL is given) in a volume, not in /app.
ENV CATALOG_HOME=/var/lib/catalog/state \
    CATALOG_POLICIES_DIR=/app/policies \
    CATALOG_HOST=0.0.0.0 \
    CATALOG_PORT=5000
EXPOSE 5000
CMD ["catalog", "serve"]

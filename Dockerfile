# The service image: dependencies are installed here, at build time, never when a container starts.
# Stage 1 builds the wheel (migrations and default policies are package data inside it); stage 2 installs
# that wheel, non-editable, so the image holds no source checkout at all.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY catalog ./catalog
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
# The runtime dependencies only (no dev extras).
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --create-home --home-dir /var/lib/catalog catalog \
    && install -d -o catalog -m 0700 /var/lib/catalog/state
USER catalog
WORKDIR /var/lib/catalog
# State (logs, and the embedded server's data when no database URL is given) in a volume. The default
# policy files ship in the package; mount a directory and set CATALOG_POLICIES_DIR to use a site's own.
ENV CATALOG_HOME=/var/lib/catalog/state \
    CATALOG_HOST=0.0.0.0 \
    CATALOG_PORT=5000
EXPOSE 5000
CMD ["catalog", "serve"]

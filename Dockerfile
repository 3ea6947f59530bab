# syntax=docker/dockerfile:1
# Build stage: resolve and build wheels once, so the runtime image carries no compiler.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY providers ./providers
COPY audiocodecs ./audiocodecs
COPY loadtest ./loadtest
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: only the wheels, a non-root user, and the same command as `make run`.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 relay
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY web-demo /app/web-demo
WORKDIR /app
USER relay
ENV RELAY_HOST=0.0.0.0 RELAY_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["realtime-relay", "serve"]

# One image for every role of a team deployment (docker-compose.yml): migrate, api,
# ray-head (+ runner), ray-worker. CPU torch by default; GPU workers build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from its own index, so that the project's `torch>=2.4` is already satisfied
# (the default PyPI wheel would pull the multi-GB CUDA build).
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch>=2.4"

WORKDIR /app
# every other dependency at the version of the lock file (make lock), so this layer survives
# code edits and the image runs what CI tested
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md* ./
COPY service ./service
COPY workers ./workers
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 scalesweep
# migrations/ stays next to the code: upgrade_head finds it from the working directory
USER scalesweep
EXPOSE 8000 6379 8265
# listening on 0.0.0.0 needs tokens: `scalesweep token create ...` against the same database
ENV SCALESWEEP_AUTH=on
CMD ["scalesweep", "serve", "--host", "0.0.0.0", "--port", "8000"]

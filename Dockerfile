# Sala image: the server and the worker are the same program (`sala server`, `sala worker`).
#
#   docker build -t sala .                                   # CPU torch (default)
#   docker build -t sala:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim

# torch first and from PyTorch's own index: the plain PyPI `torch` wheel bundles CUDA (several GB),
# which a CPU worker and the server never use. The GPU worker image overrides TORCH_INDEX.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"

# Khmer fonts: training draws every face fontconfig lists and validates on held-out designs
# (Khmer OS Siemreap, Khmer Busra, Noto Serif Khmer); raqm shapes Khmer; Tesseract's khm model is
# what `sala eval --tesseract` compares with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fontconfig libraqm0 fonts-khmeros fonts-sil-mondulkiri \
       fonts-sil-mondulkiri-extra fonts-noto-core tesseract-ocr tesseract-ocr-khm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY worker ./worker
COPY core ./core
COPY client ./client
COPY sala ./sala
COPY migrations ./migrations
# The wheel carries the Alembic migrations (migrations/, installed as server/migrations) and the dashboard as package data.
RUN pip install ".[postgres]"

# Not root. /artifacts is created here, owned by `sala`, so a named volume mounted there starts
# out writable; /data holds the SQLite default (./.sala/) when no SALA_DATABASE_URL is given.
RUN useradd --create-home --uid 1000 sala \
    && mkdir -p /artifacts /data \
    && chown sala:sala /artifacts /data
USER sala
WORKDIR /data

EXPOSE 8000
# Bound beyond loopback, the server refuses to start until a token exists:
#   docker run --rm sala sala tokens create --role admin --name me
CMD ["sala", "server", "--host", "0.0.0.0", "--port", "8000"]

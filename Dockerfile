# One image for every process of the platform: the API, the consumers, the workers, the cron run
# and the operator, all behind the `booking` CLI (`docker run IMAGE operator --standalone`).
# Builds with the classic builder and with BuildKit (no heredocs, no frontend image to pull).
# BASE_IMAGE: any Debian-like image with Python 3.11 and `python` on PATH; scripts/kind/ builds one from
# Debian bookworm's packages (local/python:3.11-bookworm) where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: a virtualenv with the project and its dependencies, compiled once
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies change less often than the code: resolve them in their own layer (README.md, which the
# package metadata needs, comes later so editing it does not download every dependency again).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY core core
COPY operator operator
COPY services services
COPY consumers consumers
COPY workers workers
RUN pip install --no-deps . && python -m compileall -q /opt/venv

# ---- runtime: no compilers, no pip cache, a fixed non-root uid
FROM ${BASE_IMAGE}
ARG UID=10001
# The user is written directly so the base needs no useradd (minimal Debian images lack it).
RUN echo "booking:x:${UID}:${UID}::/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
 && echo "booking:x:${UID}:" >> /etc/group
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOOKING_LOG_FORMAT=json
WORKDIR /tmp
# The numeric uid lets Kubernetes verify runAsNonRoot without resolving a user name.
USER 10001:10001
ENTRYPOINT ["booking"]
CMD ["--help"]

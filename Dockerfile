# syntax=docker/dockerfile:1
# One image for every process of the platform: the API, the consumers, the workers, the cron run
# and the operator, all behind the `booking` CLI (`docker run IMAGE operator --standalone`).

# ---- build: a virtualenv with the project and its dependencies, compiled once
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies change less often than the code: resolve them in their own layer.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip install -r /tmp/requirements.txt
COPY core core
COPY operator operator
COPY services services
COPY consumers consumers
COPY workers workers
RUN pip install --no-deps . && python -m compileall -q /opt/venv

# ---- runtime: no compilers, no pip cache, a fixed non-root uid
FROM python:3.11-slim
ARG UID=10001
RUN groupadd --gid "${UID}" booking \
 && useradd --uid "${UID}" --gid "${UID}" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin booking
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

# crmsync's production image, for hosts without buildpacks (docs/operators.md: Containers). It installs
# what the Heroku buildpack installs: uv.lock with no extra, so no sandbox server, embedded Redis or
# test tool dependencies. One image, two commands (the Procfile's): see docker-compose.yml.
FROM python:3.11-slim

WORKDIR /app
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH
RUN pip install --no-cache-dir 'uv>=0.9,<1' && useradd --no-create-home --shell /usr/sbin/nologin crmsync

# The dependencies first, in a layer of their own: rebuilt only when the lock changes.
COPY pyproject.toml uv.lock .python-version README.md ./
RUN uv sync --locked --no-default-groups --no-install-project --no-cache
COPY . .
RUN uv sync --locked --no-default-groups --no-cache

USER crmsync
EXPOSE 8000
ENV PORT=8000
CMD ["crmsync", "web"]

# One image for every process of the fleet on AWS; the command picks which:
#   fleet worker supervisor|resolver|critic|watchdog   fleet mcp supervisor|resolver
# Build for the tasks' platform (infra/compute.py: linux/X86_64):
#   docker build --platform linux/amd64 -t incident-fleet .

# --- build: resolve the locked runtime set into a virtualenv: no dev group, no extras ---
# (uv sync installs no extra unless asked, so neither moto [embedded] nor pulumi [infra]:
# the tasks talk to real AWS, and the stack is deployed from a workstation.)
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# Dependencies first: they change less often than the code, so this layer is reused.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
# Every package the wheel lists ([tool.hatch.build.targets.wheel]): the CLI registers every
# command group. None of them imports moto or pulumi at module level (`make lint` checks the
# packages a task runs; tests/integration/test_runtime_dependencies.py imports them all).
COPY core ./core
COPY queues ./queues
COPY incidents ./incidents
COPY workers ./workers
COPY mcp_servers ./mcp_servers
COPY console ./console
COPY workload ./workload
COPY access ./access
COPY emulation ./emulation
COPY infra ./infra
COPY chaos ./chaos
COPY bench ./bench
COPY fleet ./fleet
RUN uv sync --frozen --no-dev --no-editable

# --- run: the virtualenv alone, as a user with no privileges and no shell ---
FROM python:3.11-slim AS run
RUN groupadd --gid 10001 fleet \
 && useradd --uid 10001 --gid fleet --no-create-home --shell /usr/sbin/nologin fleet
COPY --from=build --chown=root:root /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 FLEET_TARGET=aws FLEET_STATE_DIR=/tmp/fleet
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["fleet"]
CMD ["--help"]

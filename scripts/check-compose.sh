#!/usr/bin/env bash
# Checks docker/compose.yaml without a Docker engine: `docker compose config -q` when the
# compose plugin is installed, else `docker-compose config -q` (v1), else (neither is
# installed here: the plugin is not in Debian's apt sources) a YAML parse with python3
# that also checks the cluster settings the three nodes must agree on.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
file="$root/docker/compose.yaml"
if docker compose version >/dev/null 2>&1; then
    exec docker compose -f "$file" config -q
elif command -v docker-compose >/dev/null 2>&1; then
    exec docker-compose -f "$file" config -q
fi
python3 - "$file" <<'PY'
import sys
import yaml

with open(sys.argv[1]) as f:
    doc = yaml.safe_load(f)
services = doc["services"]
assert sorted(services) == ["node1", "node2", "node3"], sorted(services)
voters = set()
ids = set()
for name, service in services.items():
    args = service["command"]
    overrides = dict(a.split("=", 1) for a in args if "=" in a)
    assert "serve" not in args, f"{name}: the image's ENTRYPOINT already says serve"
    ids.add(overrides["node.id"])
    voters.add(overrides["controller.quorum.voters"])
    assert overrides["process.roles"] == "broker,controller", name
    assert "CONTROLLER://" in overrides["listeners"], name
    assert overrides["controller.listener.names"] == "CONTROLLER", name
    assert service["build"]["dockerfile"] == "docker/Dockerfile", name
assert ids == {"1", "2", "3"}, ids
assert len(voters) == 1, voters
print("docker/compose.yaml: YAML parses; three nodes, one quorum (no compose CLI here)")
PY

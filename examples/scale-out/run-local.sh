#!/bin/sh
# The same cluster as docker-compose.yml, as plain commands on one host (from the repository's root).
# Redis, then three gateways on ports 8081-8083, each with its own state file. Put any load balancer
# in front (nginx.conf here, with the servers changed to 127.0.0.1:8081..8083), or skip them all and
# run one port with several processes: python run.py --config local.toml --workers 3
set -eu
dir=$(mktemp -d)
sed -e 's|redis://redis:6379/0|redis://127.0.0.1:6379/0|' \
    -e 's|host = "0.0.0.0"|host = "127.0.0.1"|' \
    -e "s|/var/lib/provider-fallback/fallback.db|$dir/fallback.db|" \
    examples/scale-out/config.toml > "$dir/local.toml"

redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes
for i in 1 2 3; do
    sed "s|$dir/fallback.db|$dir/fallback.$i.db|" "$dir/local.toml" > "$dir/gateway$i.toml"
    python run.py --config "$dir/gateway$i.toml" --port "808$i" &
done
echo "gateways on 127.0.0.1:8081-8083, state in $dir; Ctrl-C stops them"
trap 'kill $(jobs -p) 2>/dev/null; redis-cli -p 6379 shutdown nosave 2>/dev/null || true' INT TERM
wait

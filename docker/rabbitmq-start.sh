#!/bin/sh
# Starts RabbitMQ with this project's virtual host and users, written into the definitions file the broker imports at
# every boot (load_definitions in its config; importing at every boot also applies a changed password). Neither user
# is an administrator, and no default user is created:
#   RABBITMQ_APP_USER         the app (CELERY_BROKER_URL): configure, write and read on RABBITMQ_VHOST; no UI login
#   RABBITMQ_MONITORING_USER  KEDA and people: the `monitoring` tag (the management UI, read-only) and no rights on
#                             any queue, so it can neither take nor publish a message
# Administration is `rabbitmqctl` inside the broker's container. The same script runs in docker/compose.yaml and, as
# a copy in its ConfigMap, in k8s/rabbitmq.yaml.
set -eu
vhost="${RABBITMQ_VHOST:?set RABBITMQ_VHOST}"
app_user="${RABBITMQ_APP_USER:?set RABBITMQ_APP_USER}"
app_password="${RABBITMQ_APP_PASSWORD:?set RABBITMQ_APP_PASSWORD}"
monitoring_user="${RABBITMQ_MONITORING_USER:-monitoring}"
monitoring_password="${RABBITMQ_MONITORING_PASSWORD:?set RABBITMQ_MONITORING_PASSWORD}"
# Where the broker's config (load_definitions) looks for the file.
definitions="${RABBITMQ_DEFINITIONS_FILE:-/tmp/mp3converter-definitions.json}"
for value in "$vhost" "$app_user" "$app_password" "$monitoring_user" "$monitoring_password"; do
  case "$value" in
    *[!A-Za-z0-9_-]*) echo "rabbitmq-start: names and passwords may hold only letters, digits, - and _" >&2; exit 64 ;;
  esac
done
umask 077
cat > "$definitions" <<JSON
{
  "vhosts": [{"name": "$vhost"}],
  "users": [
    {"name": "$app_user", "password": "$app_password", "tags": []},
    {"name": "$monitoring_user", "password": "$monitoring_password", "tags": ["monitoring"]}
  ],
  "permissions": [
    {"user": "$app_user", "vhost": "$vhost", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "$monitoring_user", "vhost": "$vhost", "configure": "^$", "write": "^$", "read": "^$"}
  ]
}
JSON
# Started as root, the image's entrypoint drops to its rabbitmq user, which must read the file.
if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then chown rabbitmq:rabbitmq "$definitions"; fi
exec docker-entrypoint.sh rabbitmq-server

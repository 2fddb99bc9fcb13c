#!/bin/sh
# Prints the Secrets of secrets.example.yaml with fresh random keys and passwords, consistent across the URLs that
# repeat them. Nothing is written to disk:
#   sh k8s/make-secrets.sh | kubectl apply -f -
# SMTP is yours to give (the default is a placeholder the notifier cannot reach):
#   EMAIL_URL='smtp+tls://user:password@smtp.example.com:587' sh k8s/make-secrets.sh | kubectl apply -f -
# Running it again makes new passwords, which the databases (initialised with the old ones) would refuse.
set -eu

NAMESPACE="${NAMESPACE:-mp3converter}"
EMAIL_URL="${EMAIL_URL:-smtp+tls://change-me-smtp-user:change-me-smtp-password@smtp.example.com:587}"

# Hex only: safe inside URLs, JSON and YAML without quoting.
random() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

secret() {  # name, then KEY=value pairs
  name=$1; shift
  printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\ntype: Opaque\nstringData:\n' \
    "$name" "$NAMESPACE"
  for pair in "$@"; do
    printf '  %s: "%s"\n' "${pair%%=*}" "${pair#*=}"
  done
}

# The signing keys: 64 characters each (at least 50 are required).
django_key=$(random 32)
jwt_key=$(random 32)
mysql_password=$(random 18)
mysql_root_password=$(random 18)
rabbitmq_app_password=$(random 18)
rabbitmq_monitoring_password=$(random 18)
mongodb_root_password=$(random 18)
mongodb_app_password=$(random 18)
flower_password=$(random 12)
metrics_token=$(random 32)

secret mp3converter-django "DJANGO_SECRET_KEY=$django_key"
secret mp3converter-jwt "JWT_SIGNING_KEY=$jwt_key"
secret mp3converter-database "DATABASE_URL=mysql://mp3converter:$mysql_password@mysql:3306/mp3converter"
secret mp3converter-broker "CELERY_BROKER_URL=amqp://mp3converter:$rabbitmq_app_password@rabbitmq:5672/mp3converter"
secret mp3converter-storage "MONGODB_URI=mongodb://mp3converter:$mongodb_app_password@mongodb:27017/mp3converter"
secret mp3converter-smtp "EMAIL_URL=$EMAIL_URL"
secret mp3converter-flower "FLOWER_BASIC_AUTH=admin:$flower_password"
secret mp3converter-metrics "METRICS_TOKEN=$metrics_token"
secret mp3converter-mysql "MYSQL_PASSWORD=$mysql_password" "MYSQL_ROOT_PASSWORD=$mysql_root_password"
secret mp3converter-rabbitmq \
  "RABBITMQ_APP_PASSWORD=$rabbitmq_app_password" "RABBITMQ_MONITORING_PASSWORD=$rabbitmq_monitoring_password"
secret mp3converter-mongodb \
  "MONGO_INITDB_ROOT_PASSWORD=$mongodb_root_password" "MONGO_APP_PASSWORD=$mongodb_app_password"
secret mp3converter-keda \
  "MANAGEMENT_URL=http://monitoring:$rabbitmq_monitoring_password@rabbitmq.$NAMESPACE.svc.cluster.local:15672/mp3converter"

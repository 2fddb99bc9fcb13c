#!/bin/sh
# Prints the four Secrets of secrets.example.yaml with fresh random passwords, consistent across the URLs that
# repeat them. Nothing is written to disk:
#   sh k8s/make-secrets.sh | kubectl apply -f -
# SMTP is yours to give (the default is a placeholder the notifier cannot reach):
#   EMAIL_URL='smtp+tls://user:password@smtp.example.com:587' sh k8s/make-secrets.sh | kubectl apply -f -
# Running it again makes new passwords, which the databases (initialised with the old ones) would refuse.
set -eu

NAMESPACE="${NAMESPACE:-mp3converter}"
EMAIL_URL="${EMAIL_URL:-smtp+tls://change-me-smtp-user:change-me-smtp-password@smtp.example.com:587}"

# Hex only: safe inside URLs and YAML without quoting.
random() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

django_key=$(random 32)
mysql_password=$(random 18)
mysql_root_password=$(random 18)
rabbitmq_password=$(random 18)
mongodb_password=$(random 18)
flower_password=$(random 12)

cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: mp3converter-app
  namespace: $NAMESPACE
type: Opaque
stringData:
  DJANGO_SECRET_KEY: "$django_key"
  DATABASE_URL: "mysql://mp3converter:$mysql_password@mysql:3306/mp3converter"
  CELERY_BROKER_URL: "amqp://mp3converter:$rabbitmq_password@rabbitmq:5672/mp3converter"
  MONGODB_URI: "mongodb://mp3converter:$mongodb_password@mongodb:27017/mp3converter?authSource=admin"
  EMAIL_URL: "$EMAIL_URL"
  FLOWER_BASIC_AUTH: "admin:$flower_password"
---
apiVersion: v1
kind: Secret
metadata:
  name: mp3converter-mysql
  namespace: $NAMESPACE
type: Opaque
stringData:
  MYSQL_PASSWORD: "$mysql_password"
  MYSQL_ROOT_PASSWORD: "$mysql_root_password"
---
apiVersion: v1
kind: Secret
metadata:
  name: mp3converter-rabbitmq
  namespace: $NAMESPACE
type: Opaque
stringData:
  RABBITMQ_DEFAULT_PASS: "$rabbitmq_password"
  MANAGEMENT_URL: "http://mp3converter:$rabbitmq_password@rabbitmq.$NAMESPACE.svc.cluster.local:15672/mp3converter"
---
apiVersion: v1
kind: Secret
metadata:
  name: mp3converter-mongodb
  namespace: $NAMESPACE
type: Opaque
stringData:
  MONGO_INITDB_ROOT_PASSWORD: "$mongodb_password"
YAML

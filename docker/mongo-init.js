// The application's MongoDB user, with readWrite on its own database and nothing else. The image runs this once, on
// an empty data volume, signed in as root, against MONGO_INITDB_DATABASE (docker/compose.yaml mounts it; k8s/mongodb.yaml
// carries a copy in its ConfigMap, which make test keeps equal).
const name = process.env.MONGO_INITDB_DATABASE;
db.getSiblingDB(name).createUser({
  user: process.env.MONGO_APP_USERNAME,
  pwd: process.env.MONGO_APP_PASSWORD,
  roles: [{ role: "readWrite", db: name }],
});

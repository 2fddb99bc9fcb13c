"""gunicorn's side of web's metrics (`gunicorn --config python:mp3converter.metrics.gunicorn_config`, in
docker/bin/web): when a worker process ends, the gauges it kept of live things go with it. Only gunicorn's setting
names count in this module; the rest of web's settings stay on its command line.
"""


def child_exit(server, worker) -> None:
    from .processes import process_ended

    process_ended(worker.pid)

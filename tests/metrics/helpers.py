"""Reading metrics as Prometheus does: scraped over HTTP with the token, parsed by prometheus_client's own parser."""

import urllib.error
import urllib.request

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mp3converter.metrics import instruments


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition: (name, its labels) -> value. Parsing fails on anything Prometheus would refuse."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels) -> float:
    """A sample's value, 0 when the series is not there (yet)."""
    return scraped.get((name, frozenset(labels.items())), 0.0)


def total(scraped: dict, name: str, **labels) -> float:
    """The sum over the series of `name` whose labels include `labels` (Prometheus' sum over the others)."""
    wanted = set(labels.items())
    return sum(v for (sample, sample_labels), v in scraped.items() if sample == name and wanted <= sample_labels)


def scrape(url: str, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Moved:
    """How far each series moved between entering and leaving the block."""

    def __enter__(self):
        self.before = samples(generate_latest(instruments.registry).decode())
        return self

    def __exit__(self, *exc_info):
        self.after = samples(generate_latest(instruments.registry).decode())

    def __call__(self, name: str, **labels) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)

    def total(self, name: str, **labels) -> float:
        return total(self.after, name, **labels) - total(self.before, name, **labels)

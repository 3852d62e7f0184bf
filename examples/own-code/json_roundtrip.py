"""JSON round trip: encode a nested document to text and decode it back, per task.

The shape of an API server's or a data pipeline's hot loop. The standard library's ``json``
(its C accelerator holds the GIL: threads serialize on a default build) unless the matrix asks
for another encoder with the ``codec`` parameter: ``ujson`` (a third-party C extension; list it
in the workload's ``requirements``).
"""

from __future__ import annotations

import importlib
import json

KIND = "cpu"
PARAMS = {
    "tasks": {"default": 8, "min": 1, "max": 4096, "doc": "documents per timed call"},
    "size": {"default": 300, "min": 1, "max": 100_000, "doc": "records per document"},
    "rounds": {"default": 4, "min": 1, "max": 10_000, "doc": "encode/decode round trips per task"},
    "codec": {"default": "json", "choices": ["json", "ujson"], "doc": "the JSON library"},
}


def _document(seed: int, size: int) -> dict:
    return {
        "id": seed,
        "records": [
            {
                "user": f"user-{seed}-{i}",
                "score": (seed * 31 + i * 17) % 1000 / 7,
                "tags": ["alpha", "beta", "gamma"][: 1 + i % 3],
                "active": i % 2 == 0,
                "nested": {"level": i % 5, "path": [i, i + 1, i + 2]},
            }
            for i in range(size)
        ],
    }


def make_tasks(params: dict) -> list:
    return [(seed, params["size"], params["rounds"], params["codec"]) for seed in range(params["tasks"])]


def run_task(task: tuple) -> int:
    seed, size, rounds, codec = task
    library = importlib.import_module(codec)  # once per process: then a dictionary lookup
    document = _document(seed, size)
    total = 0
    for _ in range(rounds):
        text = library.dumps(document)
        decoded = library.loads(text)
        total += len(decoded["records"])
    return total


def check(params: dict, tasks: list, results: list) -> None:
    expected = [params["size"] * params["rounds"]] * len(tasks)
    if results != expected:
        raise AssertionError(f"json_roundtrip: got {results[:3]}..., expected {expected[:3]}...")
    # the codec must round-trip a document exactly, not just keep its length
    library = importlib.import_module(params["codec"])
    document = _document(1, 3)
    if library.loads(library.dumps(document)) != json.loads(json.dumps(document)):
        raise AssertionError(f"json_roundtrip: {params['codec']} changed the document")

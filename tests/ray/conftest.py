"""One local Ray (2 CPUs) per test module, which every run in the module joins."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import ray

from pipeline.ray.cluster import NAMESPACE


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """The address of a local Ray started for this module; runs in this process use it as is,
    child processes join it with --ray-address."""
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        namespace=NAMESPACE,
    )
    try:
        yield str(context.address_info["gcs_address"])  # type: ignore[attr-defined]
    finally:
        ray.shutdown()

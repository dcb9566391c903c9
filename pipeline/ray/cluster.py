"""Starting or joining Ray for one run: the named limiter actor and the row actors, and letting
them go at the end (a Ray this run started is shut down with it)."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from typing import Any

import ray

from pipeline.errors import JobError
from pipeline.kinds import Kind
from pipeline.ray import RayOptions
from pipeline.ray.limiter import GlobalLimit
from pipeline.ray.worker import RowActor, WorkerSettings

log = logging.getLogger(__name__)
ACTOR_CPUS = 0.25  # the actors wait on the network: whole CPUs each starved the rest of Ray
NAMESPACE = "pipeline"  # the run's named actors: limiter "pipeline-limit-<id>", its "-row-<n>"
ACTOR_CALLS = 16  # blocks (and stop calls) one actor takes at once; its semaphore bounds packs
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # the runner's: drain, then stop


@dataclass
class Cluster:
    limiter: Any  # the GlobalLimit actor
    actors: list[Any]
    started: bool  # this run started Ray: it shuts it down
    kind: Any  # the kind in the object store, held for the life of the run: restarts need it

    @classmethod
    def start(cls, options: RayOptions, kind: Kind, settings: WorkerSettings, name: str) -> Cluster:
        started = not ray.is_initialized()
        if started:
            _join(options.address)
        cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
        count = options.actors or max(1, int(cpus))
        limiter = (
            ray.remote(GlobalLimit)
            .options(name=name, namespace=NAMESPACE, num_cpus=0)
            .remote(settings.rpm, settings.tpm)
        )
        kind_ref = ray.put(kind)  # once, not once per actor
        row_actor = ray.remote(RowActor)
        actors = [
            row_actor.options(
                name=f"{name}-row-{n}",
                namespace=NAMESPACE,
                num_cpus=ACTOR_CPUS,
                max_concurrency=ACTOR_CALLS,
                max_restarts=-1,
            ).remote(kind_ref, settings, limiter)
            for n in range(count)
        ]
        return cls(limiter, actors, started, kind_ref)

    def figures(self) -> dict[str, float]:
        """For summary.json: the limiter's calls, and the CPU seconds of the actors (the
        limiter's included), read before they go."""
        try:
            calls = ray.get(self.limiter.count.remote(), timeout=10)
            cpu = ray.get([a.cpu_s.remote() for a in (*self.actors, self.limiter)], timeout=10)
        except Exception:  # figures only: a lost actor is said, never fatal
            log.warning("ray: the actors' figures could not be read")
            return {}
        return {"ray_limiter_calls": int(calls), "ray_actors_cpu_s": round(sum(cpu), 3)}

    def stop_actors(self) -> None:
        for actor in self.actors:
            actor.stop.remote()

    def close(self) -> None:
        for actor in (*self.actors, self.limiter):
            ray.kill(actor)
        if self.started:
            ray.shutdown()


def _join(address: str | None) -> None:
    """ray.init: a local Ray for the run, or the cluster at ``address``; JobError (exit 2) when
    that cluster cannot be joined."""
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
    except ConnectionError as error:
        raise JobError(
            f"cannot join the Ray cluster at {address}: {error}; check --ray-address (or "
            "RAY_ADDRESS), and for a cluster with token authentication set RAY_AUTH_MODE=token "
            "with its token, as Ray documents"
        ) from None
    finally:  # ray.init makes SIGTERM exit at once: the run's drain must stay in charge
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

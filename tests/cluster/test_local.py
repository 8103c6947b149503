"""LocalCluster's start-up retry: a node that misses Ray's fixed 30 s registration window on
a loaded machine is cleaned up and started again; any other failure is raised at once."""

import shutil

import pytest

from cluster.local import START_ATTEMPTS, LocalCluster, StartTimeout


@pytest.fixture
def cluster(monkeypatch):
    monkeypatch.setattr("cluster.local.START_BACKOFF_S", 0.0)
    made = LocalCluster(workers=0)  # never started: only its bookkeeping is exercised
    yield made
    shutil.rmtree(made.temp_dir, ignore_errors=True)


def test_a_node_that_times_out_is_cleaned_up_and_started_again(cluster):
    calls, cleanups = [], []

    def start():
        calls.append(1)
        if len(calls) < 2:
            raise StartTimeout("ray start --head failed: The current node timed out during startup.")

    cluster._start_node(start, lambda: cleanups.append(1))
    assert (len(calls), len(cleanups)) == (2, 1)


def test_start_gives_up_after_the_last_attempt_and_cleans_each_one(cluster):
    cleanups = []

    def start():
        raise StartTimeout("timed out during startup")

    with pytest.raises(StartTimeout):
        cluster._start_node(start, lambda: cleanups.append(1))
    assert len(cleanups) == START_ATTEMPTS


def test_other_start_failures_are_not_retried(cluster):
    calls = []

    def start():
        calls.append(1)
        raise RuntimeError("ray start failed: port in use")

    with pytest.raises(RuntimeError, match="port in use"):
        cluster._start_node(start, lambda: None)
    assert len(calls) == 1


def test_a_reset_head_takes_a_new_port_and_address(cluster):
    cluster.port, cluster.address = 1, "127.0.0.1:1"
    cluster._reset_head()
    assert cluster.port != 1 and cluster.address == f"127.0.0.1:{cluster.port}"

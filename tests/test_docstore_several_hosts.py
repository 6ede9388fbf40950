"""Several es.hosts / os.hosts (a multi-node Elasticsearch or OpenSearch cluster): the
compiled list reaches the client whole, and a dead node in it is stepped over. Against
osmem-server (the emulator; no real cluster runs here), behind a first URL where nothing
listens, as a node that is down."""

from __future__ import annotations

from servers import free_port

from executor.ingest.docstore.elastic_client import make_client


def test_every_host_reaches_the_client_and_a_dead_one_is_stepped_over(emulator):
    dead = f"http://127.0.0.1:{free_port()}"
    config = {"engine": "opensearch", "hosts": [dead, emulator.url], "request_timeout": 5}
    client = make_client("opensearch", config)
    assert len(client.transport.hosts) == 2
    for _ in range(4):  # round robin meets the dead node; the client retries the live one
        assert client.info()["version"]["number"]
    es = make_client("elasticsearch", {**config, "engine": "elasticsearch"})
    assert sorted(n.base_url for n in es.transport.node_pool.all()) == sorted(
        [dead, emulator.url.rstrip("/")]
    )

"""Engine lanes: the processes behind the ``spark`` resource, started by the project itself.

``sail`` is the embedded Sail server (in process); ``sail-cluster`` is Sail's ``local-cluster``
mode (a driver and two workers exchanging data over RPC, in process); ``spark`` is a standalone
Apache Spark 4.2 cluster with Delta Lake on 127.0.0.1 (a master, two workers and a Spark
Connect server, each its own JVM), managed by ``ml_assets.engines.spark_cluster``.
"""

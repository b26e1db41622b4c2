"""The test and demonstration harness: every part of the project on one machine.

``blegw-harness demo`` and ``bench`` run the whole chain (virtual radio, broker, platform, module,
gateway daemon); ``provision-module`` is the simulated module's factory step, which needs both
the platform's CA and the module's state. The harness depends on every other package and no
package depends on it (tests/test_import_graph.py keeps it so): the daemon and the platform
never load the simulator or the virtual radio because of it.
"""

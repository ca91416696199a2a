"""v2x: cooperative perception over semantic-communication networks.

Import namespaces: ``v2x`` (core), ``v2x.datasets``, ``v2x.perception``, ``v2x.semcom``,
``v2x.channels``. Importing ``v2x`` is cheap: subpackages load on first use.
"""

__version__ = "0.1.0"

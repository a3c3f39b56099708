"""The ``process`` backend: a deployment's code runs in child processes with limits
(``backend``); each child (``child``) reaches the World through the parent over its
stdin and stdout (``pipe``)."""

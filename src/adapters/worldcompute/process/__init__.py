"""The ``process`` backend: a deployment's code runs in child processes with limits
(``backend``); each child (``child``) reaches the World over the world-proxy lane
(``http_world``)."""

"""A deployment's bundle as code: the one importer of its entry file, the upload check
in a limited child process (``loader``, ``describe``), and the code unpacked for
execution (``code``)."""

"""What both backends share: a workflow run made durable (``context``), driving it to
its end or its parking (``runner``), and how failures of user code are recorded."""
